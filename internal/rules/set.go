package rules

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/source"
)

// Set is every rule of a configuration in decision order, indexed by the request context each
// rule can match so that rules written for other contexts cost nothing.
type Set struct {
	rules []*Rule
	// byContext holds, for each context some rule is restricted to, the rules that can match
	// it (its own and the unrestricted ones) in decision order.
	byContext map[string][]*Rule
	// anyContext holds the unrestricted rules, tried for contexts no rule names.
	anyContext []*Rule
	// overlays tells whether any rule is an overlay: deciding then goes on past the winner.
	overlays bool
}

// NewSet orders the rules of files (given in file-name order) for decisions: higher priority
// first, ties by file then position. Rule names must be unique across files.
func NewSet(files []*File) (*Set, source.Errors) {
	var errs source.Errors
	s := &Set{byContext: make(map[string][]*Rule)}
	first := make(map[string]*Rule)
	for _, f := range files {
		for _, r := range f.Rules {
			if prev, dup := first[r.Name]; dup {
				errs.Addf(r.Pos, "duplicate rule name %q (first defined at %s; rule names must be unique across all files)", r.Name, prev.Pos)
				continue
			}
			first[r.Name] = r
			s.rules = append(s.rules, r)
		}
	}
	slices.SortStableFunc(s.rules, func(a, b *Rule) int { return cmp.Compare(b.Priority, a.Priority) })
	for i, r := range s.rules {
		r.Order = i
		s.overlays = s.overlays || r.Overlay
		if r.contexts == nil {
			s.anyContext = append(s.anyContext, r)
			for c := range s.byContext {
				s.byContext[c] = append(s.byContext[c], r)
			}
			continue
		}
		for _, c := range r.contexts {
			if _, ok := s.byContext[c]; !ok {
				// Rules seen so far that match any context come before this one.
				s.byContext[c] = slices.Clone(s.anyContext)
			}
			s.byContext[c] = append(s.byContext[c], r)
		}
	}
	return s, errs
}

// Rules returns the rules in decision order. The slice must not be modified.
func (s *Set) Rules() []*Rule { return s.rules }

// Step is one rule tried while deciding.
type Step struct {
	Rule    *Rule
	Matched bool
	// Err is a run-time failure of `when`; the rule then counts as not matched.
	Err error
}

// Decision is the outcome of deciding one request.
type Decision struct {
	// Rule is the rule that matched, or nil when none did (the default persona then).
	Rule *Rule
	// Overlays lists the overlay rules that matched, in the order they apply: lower priority
	// first, so that a higher priority wins a conflict.
	Overlays []*Rule
	// Trace lists every rule tried, in order, when tracing was asked for. Rules the context
	// index proves cannot match are left out.
	Trace []Step
	// Failed lists the rules whose `when` failed at run time, always, so they can be logged.
	Failed []Step
}

// Decide tries the rules that can match context in decision order: the first rule that is
// not an overlay and matches picks the persona, and every overlay that matches is collected.
func (s *Set) Decide(ev *expression.Evaluator, context string, trace bool) Decision {
	candidates, ok := s.byContext[context]
	if !ok {
		candidates = s.anyContext
	}
	var d Decision
	for _, r := range candidates {
		if d.Rule != nil && !r.Overlay {
			continue
		}
		matched, err := r.eval(ev)
		if trace {
			d.Trace = append(d.Trace, Step{Rule: r, Matched: matched, Err: err})
		}
		if err != nil {
			d.Failed = append(d.Failed, Step{Rule: r, Err: err})
		}
		switch {
		case matched && r.Overlay:
			d.Overlays = append(d.Overlays, r)
		case matched:
			d.Rule = r
			if !s.overlays {
				return d
			}
		}
	}
	slices.Reverse(d.Overlays)
	return d
}

// eval evaluates the rule for a request that reached it through the context index.
func (r *Rule) eval(ev *expression.Evaluator) (bool, error) {
	if r.program == nil {
		return true, nil
	}
	out, err := ev.Eval(r.program)
	if err != nil {
		return false, fmt.Errorf("when: %w", err)
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("when gave %v (%T), not a boolean", out, out)
	}
	return b, nil
}

// index returns the contexts a `when` expression can only be true for, found in its top-level
// conjuncts `context == "x"`, `"x" == context` and `context in ["x", "y"]` (nil when it has
// none), and the program to evaluate for requests of those contexts: the expression without
// those conjuncts, nil when nothing is left.
//
// && short-circuits and a failing conjunct counts as not matched, so a request with another
// context can never match, whatever the rest of the expression does; and for a request with
// one of those contexts the context conjuncts are true, so leaving them out changes no outcome.
func index(when string, c *expression.Compiler) (contexts []string, prog *vm.Program, err error) {
	tree, err := parser.Parse(when)
	if err != nil {
		return nil, nil, err
	}
	if contexts = conjunctContexts(tree.Node); contexts == nil {
		prog, err = c.Compile(when)
		return nil, prog, err
	}
	rest := withoutContext(tree.Node)
	if rest == nil {
		return contexts, nil, nil
	}
	if prog, err = c.Compile(rest.String()); err != nil {
		// Printing a tree back into source is not guaranteed to round-trip; the whole
		// expression gives the same outcomes, only a little slower.
		prog, err = c.Compile(when)
	}
	return contexts, prog, err
}

// withoutContext removes the context conjuncts from a conjunction; nil when none is left.
func withoutContext(n ast.Node) ast.Node {
	b, ok := n.(*ast.BinaryNode)
	if !ok {
		return n
	}
	switch b.Operator {
	case "&&", "and":
		left, right := withoutContext(b.Left), withoutContext(b.Right)
		switch {
		case left == nil:
			return right
		case right == nil:
			return left
		}
		return &ast.BinaryNode{Operator: b.Operator, Left: left, Right: right}
	}
	if conjunctContexts(n) != nil {
		return nil
	}
	return n
}

func conjunctContexts(n ast.Node) []string {
	b, ok := n.(*ast.BinaryNode)
	if !ok {
		return nil
	}
	switch b.Operator {
	case "&&", "and":
		left, right := conjunctContexts(b.Left), conjunctContexts(b.Right)
		switch {
		case left == nil:
			return right
		case right == nil:
			return left
		}
		both := []string{}
		for _, c := range left {
			if slices.Contains(right, c) {
				both = append(both, c)
			}
		}
		return both
	case "==":
		if isContext(b.Left) {
			if s, ok := b.Right.(*ast.StringNode); ok {
				return []string{s.Value}
			}
		}
		if isContext(b.Right) {
			if s, ok := b.Left.(*ast.StringNode); ok {
				return []string{s.Value}
			}
		}
	case "in":
		arr, ok := b.Right.(*ast.ArrayNode)
		if !isContext(b.Left) || !ok {
			return nil
		}
		out := make([]string, 0, len(arr.Nodes))
		for _, item := range arr.Nodes {
			s, ok := item.(*ast.StringNode)
			if !ok {
				return nil
			}
			out = append(out, s.Value)
		}
		return out
	}
	return nil
}

func isContext(n ast.Node) bool {
	id, ok := n.(*ast.IdentifierNode)
	return ok && id.Value == "context"
}
