package config

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/persona-router/persona-router/internal/rules"
	"github.com/persona-router/persona-router/internal/source"
)

// runTests runs every rule test against the snapshot and records which rules they reach. A
// failing test fails the load: it is reported at the test, with what it got and wanted. When
// ctx ends, it stops between two tests and returns ctx's error: each test's evaluations are
// bounded by the expression budget, so it stops promptly.
func (s *Snapshot) runTests(ctx context.Context) error {
	var errs source.Errors
	reached := make(map[*rules.Rule]bool)
	for _, f := range s.ruleFiles {
		for _, t := range f.Tests {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := s.metadata.Validate(t.Input.Metadata); err != nil {
				errs.Addf(t.Pos, "test %q failed: its request would be refused: %v", t.Name, err)
				continue
			}
			res := s.Resolve(t.Input, false)
			if res.Rule != nil {
				reached[res.Rule] = true
			}
			if problems := check(t, &res); len(problems) > 0 {
				errs.Addf(t.Pos, "test %q failed: %s", t.Name, strings.Join(problems, "; "))
				continue
			}
			s.tests++
		}
	}
	for _, r := range s.rules.Rules() {
		if !reached[r] {
			s.uncovered = append(s.uncovered, r)
		}
	}
	return errs.Err()
}

// check compares a result with a test's expectations and describes each difference.
func check(t *rules.Test, res *Result) []string {
	var problems []string
	got := "null (no rule matched)"
	if res.Rule != nil {
		got = fmt.Sprintf("%q", res.Rule.Name)
	}
	switch {
	case t.ExpectDefault && res.Rule != nil:
		problems = append(problems, fmt.Sprintf("rule: got %s, want null (no rule matched)", got))
	case t.ExpectRule != nil && (res.Rule == nil || res.Rule.Name != *t.ExpectRule):
		problems = append(problems, fmt.Sprintf("rule: got %s, want %q", got, *t.ExpectRule))
	}
	if t.ExpectPersona != nil && res.Persona != *t.ExpectPersona {
		problems = append(problems, fmt.Sprintf("persona: got %q, want %q", res.Persona, *t.ExpectPersona))
	}
	if len(t.ExpectConfig) == 0 {
		return problems
	}
	if res.Err != nil {
		return append(problems, fmt.Sprintf("personaConfig: rendering failed: %v", res.Err))
	}
	rendered := configFields(res)
	for _, want := range t.ExpectConfig {
		got, present := rendered[want.Field]
		if !present && want.Value != nil {
			// Empty optional fields are left out of the config; they compare as the zero
			// value of what the test expects ("", 0 or false).
			got = reflect.Zero(reflect.TypeOf(want.Value)).Interface()
		}
		if !reflect.DeepEqual(got, want.Value) {
			problems = append(problems, fmt.Sprintf("personaConfig.%s: got %s, want %s", want.Field, jsonText(got), jsonText(want.Value)))
		}
	}
	return problems
}

// configFields returns the rendered persona config as the JSON values sent to Anam.
func configFields(res *Result) map[string]any {
	b, _ := json.Marshal(res.Config)
	var fields map[string]any
	_ = json.Unmarshal(b, &fields)
	return fields
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
