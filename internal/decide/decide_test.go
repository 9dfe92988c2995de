package decide_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/persona-router/persona-router/internal/config/configtest"
	"github.com/persona-router/persona-router/internal/expression"
)

// Explain spells out the decision the token endpoint would make: a refusal alone, or the
// persona, rule, trace (with each rule's failed condition) and the request that would be sent;
// a render failure has no request.
func TestExplain(t *testing.T) {
	snap := configtest.Load(t, map[string]string{
		"personas/default.yaml": "name: \"Cara {{ metadata.label ?? '' }}\"\navatarId: 30fa96d0-26c4-4e55-94a0-517025942e18\nvoiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b\n",
		"personas/broken.yaml":  "extends: default\nname: \"{{ metadata.label ?? '' }}\"\n",
		"rules/a.yaml": `metadata:
  tier: {type: string, enum: [free, pro]}
  label: {type: string}
rules:
  - {name: pro, priority: 2, when: 'context == "sales" && metadata.tier == "pro"', persona: default}
  - {name: broken, priority: 1, when: 'context == "sales" && metadata.tier == "free"', persona: broken}
`,
	})
	decode := func(e any) map[string]any {
		t.Helper()
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}

	refused := decode(snap.Explain(expression.Input{Context: "sales", Metadata: map[string]any{"tier": "gold"}}, false))
	r, ok := refused["refused"].(map[string]any)
	if !ok || r["code"] != "invalid_metadata" || r["status"] != 422.0 {
		t.Errorf("refused = %v, want 422 invalid_metadata", refused["refused"])
	}
	if v, ok := refused["configVersion"]; !ok || v != snap.Version || len(refused) != 2 {
		t.Errorf("a refusal explains %v, want only refused and configVersion %s", refused, snap.Version)
	}

	e := snap.Explain(expression.Input{Context: "sales", Metadata: map[string]any{"tier": "pro", "label": "Pro"}}, false)
	if e.Persona != "default" || e.Rule == nil || *e.Rule != "pro" || e.Reason != "rule" || e.Error != "" {
		t.Errorf("decision = %s %v %s %q, want default by rule pro", e.Persona, e.Rule, e.Reason, e.Error)
	}
	var pc map[string]any
	if err := json.Unmarshal(e.PersonaConfig, &pc); err != nil || pc["name"] != "Cara Pro" {
		t.Errorf("personaConfig = %s (%v), want the rendered name Cara Pro", e.PersonaConfig, err)
	}
	if len(e.Trace) != 1 || e.Trace[0].Rule != "pro" || !e.Trace[0].Matched {
		t.Errorf("trace = %+v, want pro, matched", e.Trace)
	}

	e = snap.Explain(expression.Input{Context: "sales", Metadata: map[string]any{"tier": "free"}}, false)
	if e.Persona != "broken" || e.Error == "" || string(e.PersonaConfig) != "null" || string(e.Request) != "null" {
		t.Errorf("render failure explained as persona %s, error %q, personaConfig %s, request %s", e.Persona, e.Error, e.PersonaConfig, e.Request)
	}
	if len(e.Trace) != 2 || e.Trace[0].Rule != "pro" || e.Trace[0].Matched || e.Trace[0].Failed != `metadata.tier == "pro"` {
		t.Errorf("trace = %+v, want pro tried first and failing on its tier condition", e.Trace)
	}
}

// Every matching overlay applies, lower priority first so that the higher one wins a
// conflict; null removes a field; an overlay reads the persona rendered so far; a rule that
// is not an overlay wins as before; a persona saved in Anam Lab is left as it is.
func TestOverlays(t *testing.T) {
	snap := configtest.Load(t, map[string]string{
		"personas/default.yaml": "name: Base\navatarId: 30fa96d0-26c4-4e55-94a0-517025942e18\nvoiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b\nsystemPrompt: Be kind.\nskipGreeting: true\n",
		"personas/lab.yaml":     "personaId: 7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c\n",
		"rules/a.yaml": `rules:
  - {name: lab, when: context == "lab", persona: lab}
  - {name: low, overlay: true, priority: 1, when: metadata.fr == true, set: {languageCode: fr, systemPrompt: "{{ persona.systemPrompt }} Low."}}
  - {name: high, overlay: true, priority: 5, when: metadata.de == true, set: {languageCode: de, skipGreeting: null, systemPrompt: "{{ persona.systemPrompt }} High."}}
`,
	})
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
