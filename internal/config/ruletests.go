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
	if len(t.ExpectConfig) == 0 && len(t.ExpectSession) == 0 {
		return problems
	}
	if res.Err != nil {
		return append(problems, fmt.Sprintf("personaConfig: rendering failed: %v", res.Err))
	}
	var request map[string]any
	if err := json.Unmarshal(res.Request(), &request); err != nil {
		return append(problems, fmt.Sprintf("the rendered request is not JSON: %v", err))
	}
	config, _ := request["personaConfig"].(map[string]any)
	problems = append(problems, compare("personaConfig", config, t.ExpectConfig)...)
	return append(problems, compare("session", request, t.ExpectSession)...)
}

// compare checks the expected fields of one part of the rendered request.
func compare(what string, rendered map[string]any, want []rules.ConfigExpectation) []string {
	var problems []string
	for _, w := range want {
		got, present := rendered[w.Field]
		if !present && w.Known && w.Value != nil && scalar(w.Value) {
			// Empty optional fields are left out of the request; they compare as the zero
			// value of what the test expects ("", 0 or false).
			got = reflect.Zero(reflect.TypeOf(w.Value)).Interface()
		}
		if !present && !w.Known && w.Value != nil {
			problems = append(problems, fmt.Sprintf("%s.%s: the rendered request has no such field, want %s", what, w.Field, jsonText(w.Value)))
			continue
		}
		if !matches(got, w.Value) {
			problems = append(problems, fmt.Sprintf("%s.%s: got %s, want %s", what, w.Field, jsonText(got), jsonText(w.Value)))
		}
	}
	return problems
}

// zero tells whether v is what an empty optional field compares as: null, "", 0 or false.
func zero(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case float64:
		return v == 0
	case bool:
		return !v
	}
	return false
}

func scalar(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return false
	}
	return true
}

// matches tells whether a rendered value matches an expected one: a mapping matches an object
// that has at least its keys, each matching; a list matches a list of as many items, each
// matching; anything else must be equal.
func matches(got, want any) bool {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return false
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok && zero(wv) {
				continue // left out of the request, as empty optional fields are
			}
			if !ok || !matches(gv, wv) {
				return false
			}
		}
		return true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !matches(g[i], w[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(got, want)
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
