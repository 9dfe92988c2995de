package persona

import (
	"errors"
	"strings"
	"testing"

	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/source"
)

// layout is the layout of the templates parseTemplates parsed last.
var layout *expression.Layout

func parseTemplates(t *testing.T, files map[string]string) map[string]*Template {
	t.Helper()
	c := expression.NewCompiler()
	defer func() { layout = c.Layout() }()
	out := make(map[string]*Template)
	for name, text := range files {
		tmpl, errs := Parse(name, []byte(text), c)
		if errs != nil {
			t.Fatalf("Parse(%s): %v", name, errs)
		}
		out[tmpl.ID] = tmpl
	}
	if errs := Resolve(out, "personas"); errs != nil {
		t.Fatalf("Resolve: %v", errs)
	}
	return out
}

const ids = `
avatarId: 30fa96d0-26c4-4e55-94a0-517025942e18
voiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b
`

func TestRenderPlaceholders(t *testing.T) {
	tmpls := parseTemplates(t, map[string]string{
		"default.yaml": `name: "Support for {{ user.name ?? 'you' }}"` + ids + `
systemPrompt: "Tier {{ metadata.tier }}, seats {{ metadata.seats }}, trial {{ metadata.trial }}, {{ metadata.gone }}end"
llmId: "{{ metadata.llm ?? 'CUSTOMER_CLIENT_V1' }}"
`,
	})
	ev := expression.Acquire(expression.Input{
		Metadata: map[string]any{"tier": "pro", "seats": 12.0, "trial": false},
		User:     map[string]any{"name": "Ann"},
	}, layout)
	defer ev.Release()
	f := tmpls["default"].Fields
	c, err := f.Render(ev)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "Support for Ann" {
		t.Errorf("name = %q", c.Name)
	}
	if want := "Tier pro, seats 12, trial false, end"; c.SystemPrompt != want {
		t.Errorf("systemPrompt = %q, want %q (nil renders empty)", c.SystemPrompt, want)
	}
	if c.LLMID != "CUSTOMER_CLIENT_V1" {
		t.Errorf("llmId = %q", c.LLMID)
	}
}

func TestRenderRejectsInvalidRenderedIDs(t *testing.T) {
	tmpls := parseTemplates(t, map[string]string{
		"default.yaml": `name: "{{ metadata.name }}"
avatarId: "{{ user.preferredAvatar ?? '30fa96d0-26c4-4e55-94a0-517025942e18' }}"
voiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b
systemPrompt: "{{ metadata.a + metadata.b }}"
`,
	})
	f := tmpls["default"].Fields
	for _, tc := range []struct {
		name      string
		in        expression.Input
		field     string
		errSubstr string
	}{
		{"bad avatar", expression.Input{User: map[string]any{"preferredAvatar": "cara"}, Metadata: map[string]any{"name": "x", "a": "1", "b": "2"}},
			"avatarId", `avatarId must be a UUID (like 30fa96d0-26c4-4e55-94a0-517025942e18), got "cara"`},
		{"failing placeholder", expression.Input{Metadata: map[string]any{"name": "x", "a": 1.0, "b": "2"}},
			"systemPrompt", "placeholder {{ metadata.a + metadata.b }}: invalid operation"},
		{"empty name", expression.Input{Metadata: map[string]any{"a": "1", "b": "2"}},
			"name", "rendered empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := expression.Acquire(tc.in, layout)
			defer ev.Release()
			_, err := f.Render(ev)
			var re *RenderError
			if !errors.As(err, &re) || re.Field != tc.field || !strings.Contains(err.Error(), tc.errSubstr) {
				t.Errorf("Render error = %v, want field %s and %q", err, tc.field, tc.errSubstr)
			}
		})
	}
	ev := expression.Acquire(expression.Input{Metadata: map[string]any{"name": "x", "a": "1", "b": "2"}}, layout)
	defer ev.Release()
	if c, err := f.Render(ev); err != nil || c.AvatarID != "30fa96d0-26c4-4e55-94a0-517025942e18" || c.SystemPrompt != "12" {
		t.Errorf("Render = %+v, %v", c, err)
	}
}

func TestExtendsInheritsUnsetFields(t *testing.T) {
	tmpls := parseTemplates(t, map[string]string{
		"default.yaml": "name: Base\nlanguageCode: en\nmaxSessionLengthSeconds: 600\nskipGreeting: true" + ids,
		"mid.yaml":     "extends: default\nname: Mid\nlanguageCode: fr\n",
		"leaf.yaml":    "extends: mid\nsystemPrompt: Leaf prompt\n",
	})
	ev := expression.Acquire(expression.Input{}, layout)
	defer ev.Release()
	c, err := tmpls["leaf"].Fields.Render(ev)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "Mid" || c.LanguageCode != "fr" || c.MaxSessionLengthSeconds != 600 || c.SkipGreeting == nil || !*c.SkipGreeting ||
		c.SystemPrompt != "Leaf prompt" || c.AvatarID == "" {
		t.Errorf("leaf renders %+v", c)
	}
}

func TestStatefulRendersOnlyPersonaID(t *testing.T) {
	tmpls := parseTemplates(t, map[string]string{
		"default.yaml": "name: Base" + ids,
		"lab.yaml":     "extends: default\npersonaId: 7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c\n",
	})
	ev := expression.Acquire(expression.Input{}, layout)
	defer ev.Release()
	c, err := tmpls["lab"].Fields.Render(ev)
	if err != nil {
		t.Fatal(err)
	}
	if c.PersonaID != "7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c" || c.Name != "" || c.AvatarID != "" {
		t.Errorf("stateful persona renders %+v, want only personaId", c)
	}
}

func TestParseTextPositions(t *testing.T) {
	// Positions of placeholder errors point into the file, whatever the quoting.
	for _, tc := range []struct{ yaml, want string }{
		{`name: Hi {{ usr }}`, "p.yaml:1:13:"},
		{`name: "Hi {{ usr }}"`, "p.yaml:1:14:"},
		{`name: 'Hi {{ usr }}'`, "p.yaml:1:14:"},
		{"name: |\n  Hi {{ usr }}\n", "p.yaml:1:7:"},
	} {
		_, errs := Parse("p.yaml", []byte(tc.yaml), expression.NewCompiler())
		if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), tc.want) {
			t.Errorf("%q: errors %v, want one at %s", tc.yaml, errs, tc.want)
		}
	}
}

func TestCheckReportsAllMissingRequiredFields(t *testing.T) {
	tmpl, errs := Parse("solo.yaml", []byte("languageCode: en\n"), expression.NewCompiler())
	if errs != nil {
		t.Fatal(errs)
	}
	errs = Resolve(map[string]*Template{"solo": tmpl}, "personas")
	got := source.Errors(errs).Error()
	for _, want := range []string{`no "default" persona`, `persona "solo" has no name, avatarId, voiceId`} {
		if !strings.Contains(got, want) {
			t.Errorf("errors %q lack %q", got, want)
		}
	}
}

// Placeholders can give more text than any literal may hold; the rendered persona as a whole
// is bounded, and going over is that request's rendering failure.
func TestRenderedPersonaIsBounded(t *testing.T) {
	tmpls := parseTemplates(t, map[string]string{
		"default.yaml": `name: Ann
systemPrompt: "{{ repeat(metadata.note ?? '', 300) }}"` + ids,
	})
	render := func(note string) error {
		ev := expression.Acquire(expression.Input{Metadata: map[string]any{"note": note}}, layout)
		defer ev.Release()
		_, err := tmpls["default"].Fields.Render(ev)
		return err
	}
	if err := render(strings.Repeat("n", 800)); err != nil {
		t.Fatalf("240 KiB prompt: %v", err)
	}
	err := render(strings.Repeat("n", 1000))
	var re *RenderError
	if !errors.As(err, &re) || re.Field != "personaConfig" || !strings.Contains(err.Error(), "more than the 256 KiB") {
		t.Fatalf("293 KiB prompt: %v, want a RenderError over 256 KiB", err)
	}
}
