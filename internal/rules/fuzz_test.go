package rules_test

import (
	"testing"

	"github.com/persona-router/persona-router/internal/config/configtest"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/rules"
)

// FuzzParse feeds arbitrary text to the rules parser: it must return rules or positioned
// errors, never panic, and rules it accepts must decide without panicking.
func FuzzParse(f *testing.F) {
	configtest.AddSeeds(f, "../../rules", "../config/testdata/good/rules")
	f.Add([]byte("rules:\n  - {name: a, when: 'context ==', persona: p}"))
	f.Add([]byte("rules:\n  - {name: a, when: 'context in [\"a\", 1]', persona: p}\ntests: [{name: t, request: {user: {id: 1}}, expect: {rule: null}}]"))
	f.Add([]byte("rules: {}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := expression.NewCompiler()
		file, errs := rules.Parse("r.yaml", data, c)
		if (file == nil) == (errs == nil) {
			t.Fatalf("Parse returned file %v and errors %v", file, errs)
		}
		for _, e := range errs {
			if e.Pos.Line < 1 || e.Pos.Col < 1 {
				t.Errorf("error without a position: %v", e)
			}
		}
		if file == nil {
			return
		}
		set, _ := rules.NewSet([]*rules.File{file})
		for _, ctx := range []string{"", "sales", "a"} {
			ev := expression.Acquire(expression.Input{Context: ctx, Metadata: map[string]any{"tier": "pro"}}, c.Layout())
			set.Decide(ev, ctx, true)
			ev.Release()
		}
	})
}
