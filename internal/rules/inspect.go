package rules

import (
	"maps"
	"slices"
)

// Contexts lists the only request contexts the rule can match, as the context index found them
// in its `when`; nil means any context.
func (r *Rule) Contexts() []string { return slices.Clone(r.contexts) }

// Candidates lists, in decision order, the rules Decide tries for a request of context: the
// ones the context index does not rule out. The slice must not be modified.
func (s *Set) Candidates(context string) []*Rule {
	if c, ok := s.byContext[context]; ok {
		return c
	}
	return s.anyContext
}

// Contexts lists, sorted, the contexts some rule is restricted to.
func (s *Set) Contexts() []string { return slices.Sorted(maps.Keys(s.byContext)) }

// Unrestricted lists, in decision order, the rules whose `when` names no context: the rules
// tried for a context no rule is restricted to. The slice must not be modified.
func (s *Set) Unrestricted() []*Rule { return s.anyContext }
