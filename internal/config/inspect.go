package config

import (
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/rules"
	"github.com/persona-router/persona-router/internal/source"
)

// TestRequest is the request of one rule test, for tools that replay them.
type TestRequest struct {
	Name  string
	Pos   source.Pos
	Input expression.Input
}

// TestRequests lists the requests of every rule test, in file order.
func (s *Snapshot) TestRequests() []TestRequest {
	var out []TestRequest
	for _, f := range s.ruleFiles {
		for _, t := range f.Tests {
			out = append(out, TestRequest{Name: t.Name, Pos: t.Pos, Input: t.Input})
		}
	}
	return out
}

// Candidates lists, in decision order, the rules tried for a request of context: those the
// context index does not rule out.
func (s *Snapshot) Candidates(context string) []*rules.Rule { return s.rules.Candidates(context) }

// Contexts lists, sorted, the contexts some rule is restricted to.
func (s *Snapshot) Contexts() []string { return s.rules.Contexts() }

// Unrestricted lists, in decision order, the rules whose `when` names no context.
func (s *Snapshot) Unrestricted() []*rules.Rule { return s.rules.Unrestricted() }
