package decide_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/expression"
)

// Every matching overlay applies, lower priority first so that the higher one wins a
// conflict; null removes a field; an overlay reads the persona rendered so far; a rule that
// is not an overlay wins as before; a persona saved in Anam Lab is left as it is.
func TestOverlays(t *testing.T) {
	root := t.TempDir()
	for name, text := range map[string]string{
		"personas/default.yaml": "name: Base\navatarId: 30fa96d0-26c4-4e55-94a0-517025942e18\nvoiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b\nsystemPrompt: Be kind.\nskipGreeting: true\n",
		"personas/lab.yaml":     "personaId: 7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c\n",
		"rules/a.yaml": `rules:
  - {name: lab, when: context == "lab", persona: lab}
  - {name: low, overlay: true, priority: 1, when: metadata.fr == true, set: {languageCode: fr, systemPrompt: "{{ persona.systemPrompt }} Low."}}
  - {name: high, overlay: true, priority: 5, when: metadata.de == true, set: {languageCode: de, skipGreeting: null, systemPrompt: "{{ persona.systemPrompt }} High."}}
`,
	} {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := config.Load(config.Dirs{Rules: filepath.Join(root, "rules"), Personas: filepath.Join(root, "personas")})
	if err != nil {
		t.Fatal(err)
	}
	render := func(in expression.Input) (map[string]any, []string) {
		t.Helper()
		res := snap.Decide(in, false)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		var req map[string]any
		if err := json.Unmarshal(res.Request(), &req); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, o := range res.Overlays {
			names = append(names, o.Name)
		}
		return req["personaConfig"].(map[string]any), names
	}
	pc, applied := render(expression.Input{Metadata: map[string]any{"fr": true, "de": true}})
	if got, want := strings.Join(applied, ","), "low,high"; got != want {
		t.Errorf("overlays applied %s, want %s (lower priority first)", got, want)
	}
	if pc["languageCode"] != "de" || pc["systemPrompt"] != "Be kind. Low. High." {
		t.Errorf("personaConfig = %v, want the higher overlay to win and each to read the prompt so far", pc)
	}
	if _, ok := pc["skipGreeting"]; ok {
		t.Errorf("skipGreeting = %v, want it removed by the overlay's null", pc["skipGreeting"])
	}
	pc, applied = render(expression.Input{Metadata: map[string]any{"fr": true}})
	if len(applied) != 1 || pc["languageCode"] != "fr" || pc["skipGreeting"] != true {
		t.Errorf("one overlay: %v %v", applied, pc)
	}
	pc, applied = render(expression.Input{Context: "lab", Metadata: map[string]any{"fr": true}})
	if len(applied) != 0 || len(pc) != 1 || pc["personaId"] != "7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c" {
		t.Errorf("stateful persona with an overlay: %v %v, want only personaId and no overlay", applied, pc)
	}
}
