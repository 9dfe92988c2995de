package persona_test

import (
	"encoding/json"
	"testing"

	"github.com/persona-router/persona-router/internal/config/configtest"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/persona"
)

// FuzzParse feeds arbitrary text to the template parser: it must return a template or
// positioned errors, never panic, and a template it accepts must render without panicking.
func FuzzParse(f *testing.F) {
	configtest.AddSeeds(f, "../../personas", "../config/testdata/good/personas")
	f.Add([]byte("name: {{ }}"))
	f.Add([]byte("name: '{{ user.name ?? }}'\navatarId: x"))
	f.Add([]byte("- a\n- b"))
	f.Add([]byte("name: &a x\nvoiceId: *a"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := expression.NewCompiler()
		tmpl, errs := persona.Parse("default.yaml", data, c)
		if (tmpl == nil) == (errs == nil) {
			t.Fatalf("Parse returned template %v and errors %v", tmpl, errs)
		}
		for _, e := range errs {
			if e.Pos.Line < 1 || e.Pos.Col < 1 {
				t.Errorf("error without a position: %v", e)
			}
		}
		if tmpl == nil {
			return
		}
		if persona.Resolve(map[string]*persona.Template{"default": tmpl}, "personas") != nil {
			return
		}
		ev := expression.Acquire(expression.Input{Context: "x", Metadata: map[string]any{"a": 1.0}, User: map[string]any{"id": "u"}}, c.Layout())
		defer ev.Release()
		if body, err := tmpl.Program.Render(ev); err == nil && !json.Valid(body.Bytes()) {
			t.Errorf("rendered invalid JSON: %s", body.Bytes())
		}
	})
}
