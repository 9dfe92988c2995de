package config

import (
	"time"

	"github.com/persona-router/persona-router/internal/decide"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/rules"
	"github.com/persona-router/persona-router/internal/source"
)

// Snapshot is one complete, valid configuration: the decider of its rules and personas, and
// what the loader learnt about them. It is never modified after Load returns it, so any number
// of requests may use it at once; a reload builds a new one.
type Snapshot struct {
	// Version identifies the configuration by the hash of its files.
	Version  string
	LoadedAt time.Time

	// Decider decides requests with this configuration; its methods (Decide, Explain,
	// Claims…) are the snapshot's.
	*decide.Decider

	ruleFiles []*rules.File
	coverage  decide.Coverage
}

// Tests is the number of rule tests that passed when the snapshot was loaded.
func (s *Snapshot) Tests() int { return s.coverage.Passed }

// Uncovered lists the rules that no rule test reaches.
func (s *Snapshot) Uncovered() []*rules.Rule { return s.coverage.Uncovered }

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
