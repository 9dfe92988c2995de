package persona

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/source"
)

// compiler compiled the templates loadTemplates loaded last, and the sets parsed since.
var compiler *expression.Compiler

func parseTemplates(t *testing.T, files map[string]string) map[string]*Template {
	t.Helper()
	out, errs := loadTemplates(files)
	if errs != nil {
		t.Fatalf("load: %v", errs)
	}
	return out
}

// loadTemplates parses and resolves files, returning every error.
func loadTemplates(files map[string]string) (map[string]*Template, source.Errors) {
	c := expression.NewCompiler()
	compiler = c
	out := make(map[string]*Template)
	var errs source.Errors
	for name, text := range files {
		tmpl, perrs := Parse(name, []byte(text), c)
		errs.Add(perrs...)
		if tmpl != nil {
			out[tmpl.ID] = tmpl
		}
	}
	if errs != nil {
		return nil, errs
	}
	if errs := Resolve(out, "personas"); errs != nil {
		return nil, errs
	}
	return out, nil
}

// render renders p for in and decodes the request.
func render(t *testing.T, p *Program, in expression.Input) (map[string]any, error) {
	t.Helper()
	ev := expression.Acquire(in, compiler.Layout())
	defer ev.Release()
	body, err := p.Render(ev)
	if err != nil {
		return nil, err
	}
	defer body.Release()
	var req map[string]any
	if err := json.Unmarshal(body.Bytes(), &req); err != nil {
		t.Fatalf("rendered invalid JSON %s: %v", body.Bytes(), err)
	}
	return req, nil
}

// config renders p for in and returns its personaConfig.
func config(t *testing.T, p *Program, in expression.Input) map[string]any {
	t.Helper()
	req, err := render(t, p, in)
	if err != nil {
		t.Fatal(err)
	}
	pc, ok := req["personaConfig"].(map[string]any)
	if !ok {
		t.Fatalf("no personaConfig in %v", req)
	}
	return pc
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
	c := config(t, tmpls["default"].Program, expression.Input{
		Metadata: map[string]any{"tier": "pro", "seats": 12.0, "trial": false},
		User:     map[string]any{"name": "Ann"},
	})
	for field, want := range map[string]any{
		"name":         "Support for Ann",
		"systemPrompt": "Tier pro, seats 12, trial false, end",
		"llmId":        "CUSTOMER_CLIENT_V1",
	} {
		if got, ok := c[field]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", field, got, ok, want)
		}
	}
}

func TestRenderRejectsInvalidRenderedValues(t *testing.T) {
	tmpls := parseTemplates(t, map[string]string{
		"default.yaml": `name: "{{ metadata.name }}"
avatarId: "{{ user.preferredAvatar ?? '30fa96d0-26c4-4e55-94a0-517025942e18' }}"
voiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b
systemPrompt: "{{ metadata.a + metadata.b }}"
maxSessionLengthSeconds: "{{ metadata.max }}"
zeroDataRetention: "{{ metadata.region == 'EU' }}"
voiceDetectionOptions:
  endOfSpeechSensitivity: "{{ metadata.sensitivity }}"
tools:
  - type: server
    subtype: webhook
    name: lookup
    description: Looks up orders
    url: "{{ metadata.hook }}"
`,
	})
	ok := map[string]any{"name": "x", "a": "1", "b": "2", "hook": "https://h.example/x"}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for key, val := range ok {
			m[key] = val
		}
		m[k] = v
		return m
	}
	for _, tc := range []struct {
		name      string
		in        expression.Input
		field     string
		errSubstr string
	}{
		{"bad avatar", expression.Input{User: map[string]any{"preferredAvatar": "cara"}, Metadata: ok},
			"avatarId", `must be a UUID (like 30fa96d0-26c4-4e55-94a0-517025942e18), got "cara"`},
		{"failing placeholder", expression.Input{Metadata: with("a", 1.0)},
			"systemPrompt", "placeholder {{ metadata.a + metadata.b }}: invalid operation"},
		{"empty name", expression.Input{Metadata: with("name", "")},
			"name", "personaConfig has no name (required)"},
		{"number from text", expression.Input{Metadata: with("max", "1800")},
			"maxSessionLengthSeconds", `must be a positive integer, got "1800"`},
		{"fraction for an integer", expression.Input{Metadata: with("max", 1.5)},
			"maxSessionLengthSeconds", "must be a positive integer, got 1.5"},
		{"out of range", expression.Input{Metadata: with("sensitivity", 1.5)},
			"voiceDetectionOptions.endOfSpeechSensitivity", "must be a number from 0 to 1, got 1.5"},
		{"http url", expression.Input{Metadata: with("hook", "http://example.com/x")},
			"tools[0].url", "must use https://"},
		{"empty url", expression.Input{Metadata: with("hook", "")},
			"tools[0].url", "tool has no url (required for a tool whose subtype is webhook)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, tmpls["default"].Program, tc.in)
			var re *RenderError
			if !errors.As(err, &re) || re.Field != tc.field || !strings.Contains(err.Error(), tc.errSubstr) {
				t.Errorf("Render error = %v, want field %s and %q", err, tc.field, tc.errSubstr)
			}
		})
	}
	c := config(t, tmpls["default"].Program, expression.Input{Metadata: with("hook", "https://h.example/x"), User: map[string]any{}})
	if c["avatarId"] != "30fa96d0-26c4-4e55-94a0-517025942e18" || c["systemPrompt"] != "12" {
		t.Errorf("Render = %v", c)
	}
	// A single placeholder keeps its type; one that gives null leaves its field out.
	if v, ok := c["zeroDataRetention"]; !ok || v != false {
		t.Errorf("zeroDataRetention = %v (present %v), want false", v, ok)
	}
	if _, ok := c["maxSessionLengthSeconds"]; ok {
		t.Errorf("maxSessionLengthSeconds rendered from null: %v", c)
	}
	c = config(t, tmpls["default"].Program, expression.Input{Metadata: with("max", 1800.0), User: map[string]any{}})
	if v := c["maxSessionLengthSeconds"]; v != 1800.0 {
		t.Errorf("maxSessionLengthSeconds = %v, want 1800", v)
	}
}

func TestExtendsMergesDeeply(t *testing.T) {
	tmpls := parseTemplates(t, map[string]string{
		"default.yaml": `name: Base
languageCode: en
maxSessionLengthSeconds: 600
skipGreeting: true
voiceDetectionOptions: {endOfSpeechSensitivity: 0.5, speechEnhancementLevel: 0.2}
voiceGenerationOptions: {speed: 1.1}
toolIds: [0934d97d-0c3a-4f33-91b0-5e136a0ef466]
` + ids,
		"mid.yaml": "extends: default\nname: Mid\nlanguageCode: fr\nvoiceDetectionOptions: {endOfSpeechSensitivity: 0.8}\n",
		"leaf.yaml": `extends: mid
systemPrompt: Leaf prompt
voiceGenerationOptions: null
toolIds: [7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c]
`,
	})
	c := config(t, tmpls["leaf"].Program, expression.Input{})
	want := `{"avatarId":"30fa96d0-26c4-4e55-94a0-517025942e18","languageCode":"fr","maxSessionLengthSeconds":600,"name":"Mid","skipGreeting":true,"systemPrompt":"Leaf prompt","toolIds":["7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c"],"voiceDetectionOptions":{"endOfSpeechSensitivity":0.8,"speechEnhancementLevel":0.2},"voiceId":"6bfbe25a-979d-40f3-a92b-5394170af54b"}`
	if got, _ := json.Marshal(c); string(got) != want {
		t.Errorf("leaf renders\n %s\nwant\n %s", got, want)
	}
}

func TestSetMergesOneNestedField(t *testing.T) {
	tmpls := parseTemplates(t, map[string]string{
		"default.yaml": "name: Base\nvoiceDetectionOptions: {endOfSpeechSensitivity: 0.5, speechEnhancementLevel: 0.2}\n" + ids,
	})
	set, errs := parseSet(t, "set: {voiceDetectionOptions: {endOfSpeechSensitivity: 0.9}, session: {clientLabel: 'eu {{ metadata.region }}'}}")
	if errs != nil {
		t.Fatal(errs)
	}
	prog, errs := tmpls["default"].Link(set, "eu", source.Pos{})
	if errs != nil {
		t.Fatal(errs)
	}
	req, err := render(t, prog, expression.Input{Metadata: map[string]any{"region": "EU"}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(req)
	want := `{"clientLabel":"eu EU","personaConfig":{"avatarId":"30fa96d0-26c4-4e55-94a0-517025942e18","name":"Base","voiceDetectionOptions":{"endOfSpeechSensitivity":0.9,"speechEnhancementLevel":0.2},"voiceId":"6bfbe25a-979d-40f3-a92b-5394170af54b"}}`
	if string(got) != want {
		t.Errorf("rule renders\n %s\nwant\n %s", got, want)
	}
	// Without a set, the rule's own client label.
	prog, _ = tmpls["default"].Link(nil, "sales", source.Pos{})
	req, _ = render(t, prog, expression.Input{})
	if req["clientLabel"] != "persona-router/default/sales" {
		t.Errorf("clientLabel = %v", req["clientLabel"])
	}
}

func parseSet(t *testing.T, yamlText string) (*Doc, source.Errors) {
	t.Helper()
	root, errs := source.Parse("rules/r.yaml", []byte(yamlText))
	if errs != nil {
		t.Fatal(errs)
	}
	return ParseSet("rules/r.yaml", root.Content[1], compiler)
}

func TestStatefulRendersOnlyPersonaID(t *testing.T) {
	tmpls := parseTemplates(t, map[string]string{
		"default.yaml": "name: Base\nzeroDataRetention: true\nsession: {sessionOptions: {sessionReplay: {enableSessionReplay: false}}}" + ids,
		"lab.yaml":     "extends: default\npersonaId: 7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c\n",
	})
	req, err := render(t, tmpls["lab"].Program, expression.Input{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(req)
	want := `{"clientLabel":"persona-router/lab","personaConfig":{"personaId":"7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c"},"sessionOptions":{"sessionReplay":{"enableSessionReplay":false}}}`
	if string(got) != want {
		t.Errorf("stateful persona renders\n %s\nwant\n %s", got, want)
	}
}

func TestEveryFieldRenders(t *testing.T) {
	tmpls := parseTemplates(t, map[string]string{
		"default.yaml": `name: Cara
avatarId: 30fa96d0-26c4-4e55-94a0-517025942e18
voiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b
llmId: CUSTOMER_CLIENT_V1
systemPrompt: "Hi <{{ user.name }}> & \"friends\"\n"
languageCode: en
maxSessionLengthSeconds: "{{ user.plan == 'pro' ? 1800 : 300 }}"
avatarModel: cara-4-latest
skipGreeting: false
zeroDataRetention: "{{ metadata.region == 'EU' }}"
enableAudioPassthrough: false
voiceDetectionOptions: {endOfSpeechSensitivity: 0.7, silenceBeforeSkipTurnSeconds: 900, silenceBeforeSessionEndSeconds: 7200, silenceBeforeAutoEndTurnSeconds: 0.5, speechEnhancementLevel: 1}
voiceGenerationOptions: {speed: 1.2, volume: 0.9, stability: 0.5, similarityBoost: 0.7, style: 0.1, emotion: calm, useSpeakerBoost: true}
directorNotes: {customStylePrompt: "Warm, {{ metadata.mood ?? 'calm' }}", expressivity: 0.4}
toolIds: [0934d97d-0c3a-4f33-91b0-5e136a0ef466]
tools:
  - type: client
    name: open_page
    description: Opens a page of the product for {{ user.name }}
    parameters: {type: object, properties: {page: {type: string, description: "The page, for {{ user.name }}"}}, required: [page]}
  - type: server
    subtype: webhook
    name: lookup_order
    description: Looks up an order
    url: "https://api.example.com/orders?shop={{ metadata.shop }}"
    method: GET
    headers: {X-Shop: "{{ metadata.shop }}"}
    awaitResponse: true
    disableInterruptions: false
  - type: server
    subtype: knowledge
    name: docs
    description: Searches the manuals
    documentFolderIds: [7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c]
extra: {futureFlag: "{{ metadata.region == 'EU' }}", futureText: "for {{ user.name }}"}
session:
  clientLabel: "web/{{ metadata.shop }}"
  sessionOptions: {sessionReplay: {enableSessionReplay: true}, videoWidth: 640, videoHeight: 480}
  extra: {environment: {livekitUrl: "wss://lk.example"}}
`,
	})
	req, err := render(t, tmpls["default"].Program, expression.Input{
		Metadata: map[string]any{"region": "EU", "shop": "a&b"},
		User:     map[string]any{"name": "Ann", "plan": "pro"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(req)
	want := `{"clientLabel":"web/a\u0026b","environment":{"livekitUrl":"wss://lk.example"},"personaConfig":{"avatarId":"30fa96d0-26c4-4e55-94a0-517025942e18","avatarModel":"cara-4-latest","directorNotes":{"customStylePrompt":"Warm, calm","expressivity":0.4},"enableAudioPassthrough":false,"futureFlag":true,"futureText":"for Ann","languageCode":"en","llmId":"CUSTOMER_CLIENT_V1","maxSessionLengthSeconds":1800,"name":"Cara","skipGreeting":false,"systemPrompt":"Hi \u003cAnn\u003e \u0026 \"friends\"\n","toolIds":["0934d97d-0c3a-4f33-91b0-5e136a0ef466"],"tools":[{"description":"Opens a page of the product for Ann","name":"open_page","parameters":{"properties":{"page":{"description":"The page, for Ann","type":"string"}},"required":["page"],"type":"object"},"type":"client"},{"awaitResponse":true,"description":"Looks up an order","disableInterruptions":false,"headers":{"X-Shop":"a\u0026b"},"method":"GET","name":"lookup_order","subtype":"webhook","type":"server","url":"https://api.example.com/orders?shop=a\u0026b"},{"description":"Searches the manuals","documentFolderIds":["7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c"],"name":"docs","subtype":"knowledge","type":"server"}],"voiceDetectionOptions":{"endOfSpeechSensitivity":0.7,"silenceBeforeAutoEndTurnSeconds":0.5,"silenceBeforeSessionEndSeconds":7200,"silenceBeforeSkipTurnSeconds":900,"speechEnhancementLevel":1},"voiceGenerationOptions":{"emotion":"calm","similarityBoost":0.7,"speed":1.2,"stability":0.5,"style":0.1,"useSpeakerBoost":true,"volume":0.9},"voiceId":"6bfbe25a-979d-40f3-a92b-5394170af54b","zeroDataRetention":true},"sessionOptions":{"sessionReplay":{"enableSessionReplay":true},"videoHeight":480,"videoWidth":640}}`
	if string(got) != want {
		t.Errorf("renders\n %s\nwant\n %s", got, want)
	}
}

// Every literal is checked at load, after extends and set are merged, whether or not anything
// renders it; each error is at the value's own line and column.
func TestLoadChecks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"literal empty name", map[string]string{"default.yaml": "name: \"\"" + ids},
			[]string{`default.yaml:1:7: name must not be empty`}},
		{"out of range nested", map[string]string{"default.yaml": "name: n" + ids + "voiceDetectionOptions:\n  endOfSpeechSensitivity: 1.5\n"},
			[]string{`default.yaml:5:27: voiceDetectionOptions.endOfSpeechSensitivity must be a number from 0 to 1, got 1.5`}},
		{"misspelt nested key", map[string]string{"default.yaml": "name: n" + ids + "voiceDetectionOptions:\n  endOfSpeechSensitivty: 0.5\n"},
			[]string{`default.yaml:5:3: unknown field "endOfSpeechSensitivty" in voiceDetectionOptions, did you mean "endOfSpeechSensitivity"?`}},
		{"misspelt top key", map[string]string{"default.yaml": "name: n" + ids + "zeroDataRetension: true\n"},
			[]string{`default.yaml:4:1: unknown field "zeroDataRetension" in persona file, did you mean "zeroDataRetention"?`}},
		{"wrong type", map[string]string{"default.yaml": "name: n" + ids + "skipGreeting: \"yes\"\n"},
			[]string{`default.yaml:4:15: skipGreeting must be true or false, got "yes" (write true or false, without quotes)`}},
		{"quoted number", map[string]string{"default.yaml": "name: n" + ids + "maxSessionLengthSeconds: \"1800\"\n"},
			[]string{`default.yaml:4:26: maxSessionLengthSeconds must be a positive integer, got "1800" (remove the quotes to make it a number)`}},
		{"bad uuid in list", map[string]string{"default.yaml": "name: n" + ids + "toolIds: [abc]\n"},
			[]string{`default.yaml:4:11: toolIds[0] must be a UUID`}},
		{"text around a typed placeholder", map[string]string{"default.yaml": "name: n" + ids + "maxSessionLengthSeconds: \"1{{ 2 }}\"\n"},
			[]string{`default.yaml:4:26: maxSessionLengthSeconds must be a positive integer or a single {{ placeholder }}`}},
		{"constant placeholder checked", map[string]string{"default.yaml": "name: \"{{ '' }}\"" + ids},
			[]string{`default.yaml:1:7: name must not be empty`}},
		{"webhook without url", map[string]string{"default.yaml": "name: n" + ids + "tools:\n  - {type: server, subtype: webhook, name: a, description: d}\n"},
			[]string{`default.yaml:5:5: tools[0]: tool has no url (required for a tool whose subtype is webhook)`}},
		{"member of another subtype", map[string]string{"default.yaml": "name: n" + ids + "tools:\n  - {type: server, subtype: knowledge, name: a, description: d, documentFolderIds: [7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c], url: 'https://x.example'}\n"},
			[]string{`default.yaml:5:124: tools[0].url: url is only for a tool whose subtype is webhook (this one's subtype is knowledge)`}},
		{"client tool with subtype", map[string]string{"default.yaml": "name: n" + ids + "tools:\n  - {type: client, subtype: webhook, name: a, description: d}\n"},
			[]string{`default.yaml:5:20: tools[0].subtype: subtype is only for a tool whose type is server (this one's type is client)`}},
		{"placeholder type", map[string]string{"default.yaml": "name: n" + ids + "tools:\n  - {type: \"{{ metadata.t }}\", name: a, description: d}\n"},
			[]string{`default.yaml:5:12: tools[0].type must be written as a plain value`}},
		{"duplicate tool names", map[string]string{"default.yaml": "name: n" + ids + "tools:\n  - {type: client, name: a, description: d}\n  - {type: client, name: a, description: e}\n"},
			[]string{`default.yaml:6:26: tools[1].name: "a" is already the name of tools[0]`}},
		{"bad tool name", map[string]string{"default.yaml": "name: n" + ids + "tools:\n  - {type: client, name: 'a b', description: d}\n"},
			[]string{`default.yaml:5:26: tools[0].name must be 1–64 characters of A-Z, a-z, 0-9, _ and - (like lookup_order), got "a b"`}},
		{"http url", map[string]string{"default.yaml": "name: n" + ids + "tools:\n  - {type: server, subtype: webhook, name: a, description: d, url: 'http://example.com'}\n"},
			[]string{`default.yaml:5:68: tools[0].url must use https://`}},
		{"both director notes", map[string]string{
			"default.yaml": "name: n" + ids + "directorNotes: {presetStyle: calm}\n",
			"child.yaml":   "extends: default\ndirectorNotes: {customStylePrompt: lively}\n"},
			[]string{`child.yaml:2:16: directorNotes: needs exactly one of presetStyle or customStylePrompt, got both`}},
		{"null removes the conflict", map[string]string{
			"default.yaml": "name: n" + ids + "directorNotes: {presetStyle: calm}\n",
			"child.yaml":   "extends: default\ndirectorNotes: {presetStyle: null, customStylePrompt: lively}\n"},
			nil},
		{"video width alone", map[string]string{"default.yaml": "name: n" + ids + "session: {sessionOptions: {videoWidth: 640}}\n"},
			[]string{`default.yaml:4:27: session.sessionOptions: videoWidth and videoHeight go together: videoHeight missing`}},
		{"known field in extra", map[string]string{"default.yaml": "name: n" + ids + "extra: {zeroDataRetention: true}\n"},
			[]string{`default.yaml:4:9: extra.zeroDataRetention is a field persona-router knows: use the typed field "zeroDataRetention" instead of extra`}},
		{"known field in session extra", map[string]string{"default.yaml": "name: n" + ids + "session: {extra: {clientLabel: x}}\n"},
			[]string{`default.yaml:4:19: session.extra.clientLabel is a field persona-router knows: use the typed field session.clientLabel instead of extra`}},
		{"long custom prompt", map[string]string{"default.yaml": "name: n" + ids + "directorNotes: {customStylePrompt: " + strings.Repeat("x", 2001) + "}\n"},
			[]string{`default.yaml:4:36: directorNotes.customStylePrompt must be 1 to 2000 characters, got 2001 characters`}},
		{"label too long", map[string]string{"default.yaml": "name: n" + ids + "session: {clientLabel: " + strings.Repeat("x", 129) + "}\n"},
			[]string{`default.yaml:4:24: session.clientLabel must be at most 128 characters, got 129 characters`}},
		{"extra as a placeholder", map[string]string{"default.yaml": "name: n" + ids + "extra: \"{{ metadata.x }}\"\n"},
			[]string{`default.yaml:4:8: extra must be a mapping written out, not a placeholder`}},
		{"session as a placeholder", map[string]string{"default.yaml": "name: n" + ids + "session: \"{{ metadata.s }}\"\n"},
			[]string{`default.yaml:4:10: session must be a mapping written out, not a placeholder`}},
		{"null members of a tool are removed", map[string]string{"default.yaml": "name: n" + ids + "tools:\n  - {type: server, subtype: webhook, name: null, description: d, url: null}\n"},
			[]string{`default.yaml:5:5: tools[0]: tool has no name (required)`, `default.yaml:5:5: tools[0]: tool has no url`}},
		{"placeholder inside a property named description", map[string]string{"default.yaml": "name: n" + ids + "tools:\n  - type: client\n    name: a\n    description: d\n    parameters: {type: object, properties: {description: {type: string, pattern: \"{{ metadata.p }}\"}}}\n"},
			[]string{`default.yaml:8:44: tools[0].parameters.properties: placeholders in a tool's parameters may only stand in description and title`}},
		{"integer beyond 2^53", map[string]string{"default.yaml": "name: n" + ids + "maxSessionLengthSeconds: 1e300\n"},
			[]string{`default.yaml:4:26: maxSessionLengthSeconds must be a positive integer, got 1e+300`}},
		{"empty folder list", map[string]string{"default.yaml": "name: n" + ids + "tools:\n  - {type: server, subtype: knowledge, name: a, description: d, documentFolderIds: []}\n"},
			[]string{`default.yaml:5:84: tools[0].documentFolderIds must not be empty`}},
		{"bad header name", map[string]string{"default.yaml": "name: n" + ids + "tools:\n  - {type: server, subtype: webhook, name: a, description: d, url: 'https://h.example', headers: {'X Shop': v}}\n"},
			[]string{`default.yaml:5:99: tools[0].headers.X Shop: "X Shop" is not a header name`}},
		{"session field at the top", map[string]string{"default.yaml": "name: n" + ids + "sessionOptions: {videoWidth: 640, videoHeight: 480}\n"},
			[]string{`default.yaml:4:1: sessionOptions belongs under session:`}},
		{"merge key", map[string]string{"default.yaml": "name: n" + ids + "<<: {skipGreeting: true}\n"},
			[]string{`default.yaml:4:1: YAML merge keys (<<) are not supported`}},
		{"persona file key in extra", map[string]string{"default.yaml": "name: n" + ids + "extra: {extends: x}\n"},
			[]string{`default.yaml:4:9: extra.extends: extends is part of the persona file`}},
		{"yes is not a boolean", map[string]string{"default.yaml": "name: n" + ids + "skipGreeting: !!bool yes\n"},
			[]string{`default.yaml:4:15: skipGreeting must be true or false, got "yes"`}},
		{"a date for a string", map[string]string{"default.yaml": "name: n" + ids + "systemPrompt: 2024-01-01\n"},
			[]string{`default.yaml:4:15: systemPrompt must be a string, got a date (2024-01-01; quote it to make it a string)`}},
		{"stateful with other fields", map[string]string{"default.yaml": "name: n" + ids + "personaId: 7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c\n"},
			[]string{`default.yaml:1:1: persona "default" sets name, avatarId, voiceId, but the persona is stateful`}},
		{"extends cycle reported once", map[string]string{"default.yaml": "name: n" + ids, "a.yaml": "extends: b\n", "b.yaml": "extends: c\n", "c.yaml": "extends: a\n"},
			[]string{`c.yaml:1:10: persona "c" extends "a", which leads back to "c" (extends cycle: c → a → b → c)`}},
		{"extends a misspelt persona", map[string]string{"default.yaml": "name: n" + ids, "a.yaml": "extends: defualt\n"},
			[]string{`a.yaml:1:10: persona "a" extends "defualt", which does not exist, did you mean "default"?`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := loadTemplates(tc.files)
			errs.Sort()
			got := errs.Strings()
			if len(got) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i, want := range tc.want {
				if !strings.HasPrefix(got[i], want) {
					t.Errorf("error %d:\n got: %s\nwant: %s…", i, got[i], want)
				}
			}
		})
	}
}

func TestParseTextPositions(t *testing.T) {
	// Positions of placeholder errors point into the file, whatever the quoting.
	for _, tc := range []struct{ yaml, want string }{
		{`name: Hi {{ usr }}`, "p.yaml:1:13:"},
		{`name: "Hi {{ usr }}"`, "p.yaml:1:14:"},
		{`name: 'Hi {{ usr }}'`, "p.yaml:1:14:"},
		{"name: |\n  Hi {{ usr }}\n", "p.yaml:2:9:"},
		{"tools:\n  - {type: client, name: a, description: \"for {{ usr }}\"}", "p.yaml:2:50:"},
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
		_, err := render(t, tmpls["default"].Program, expression.Input{Metadata: map[string]any{"note": note}})
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

// appendString escapes as encoding/json does.
// Values that only a request can get wrong are errors naming their field, never a request to
// Anam that lacks them.
func TestRenderChecksWhatPlaceholdersLeaveOut(t *testing.T) {
	tmpls := parseTemplates(t, map[string]string{
		"default.yaml": "name: n" + ids + `session: {clientLabel: "{{ metadata.label }}"}
tools:
  - {type: client, name: a, description: d}
  - "{{ metadata.tool }}"
  - type: server
    subtype: webhook
    name: h
    description: d
    url: https://h.example/x
    headers: {X-Shop: "{{ metadata.shop }}"}
`,
		"lab.yaml": `personaId: "{{ metadata.pid }}"`,
	})
	tool := map[string]any{"type": "client", "name": "b", "description": "d"}
	for _, tc := range []struct {
		name, persona string
		metadata      map[string]any
		field, err    string
	}{
		{"stateful id empty", "lab", map[string]any{"pid": ""}, "personaId", "a stateful persona needs its personaId"},
		{"stateful id null", "lab", map[string]any{}, "personaId", "a stateful persona needs its personaId"},
		{"tool item named like another", "default", map[string]any{"tool": map[string]any{"type": "client", "name": "a", "description": "d"}}, "tools[1].name", `"a" is already the name of tools[0]`},
		{"header value with a line break", "default", map[string]any{"tool": tool, "shop": "a\r\nInjected: 1"}, "tools[2].headers.X-Shop", "a header value without control characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, tmpls[tc.persona].Program, expression.Input{Metadata: tc.metadata})
			var re *RenderError
			if !errors.As(err, &re) || re.Field != tc.field || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Render error = %v, want field %s and %q", err, tc.field, tc.err)
			}
		})
	}
	// A client label that renders empty is the default one.
	req, err := render(t, tmpls["default"].Program, expression.Input{Metadata: map[string]any{"tool": tool, "shop": "s"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := req["clientLabel"]; got != "persona-router/default" {
		t.Errorf("clientLabel = %v, want the default label", got)
	}
	req, _ = render(t, tmpls["lab"].Program, expression.Input{Metadata: map[string]any{"pid": "7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c"}})
	if pc, ok := req["personaConfig"].(map[string]any); !ok || pc["personaId"] != "7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c" {
		t.Errorf("stateful request = %v", req)
	}
}

// A released body goes back to the pool empty, whatever its owner rendered into it.
func TestReleasedBodyIsEmptied(t *testing.T) {
	b := newBody()
	b.buf = append(b.buf, `{"personaConfig":{}}`...)
	b.Release()
	if len(b.buf) != 0 {
		t.Errorf("a released body still holds %q", b.buf)
	}
}

// Literal parts are encoded once, at load: a persona with many more literal fields renders
// with as many allocations as one with the same placeholders and fewer literals (none, into a
// body's buffer already large enough).
func TestRenderAllocationsIndependentOfLiterals(t *testing.T) {
	rich := "name: \"Cara for {{ user.name ?? 'you' }}\"" + ids + `maxSessionLengthSeconds: "{{ metadata.tier == 'pro' ? 1800 : 600 }}"
zeroDataRetention: "{{ metadata.region == 'EU' }}"
voiceDetectionOptions: {endOfSpeechSensitivity: 0.6, speechEnhancementLevel: 0.5}
tools:
  - {type: client, name: open_page, description: Opens a page., parameters: {type: object, properties: {page: {type: string}}}}
  - {type: server, subtype: webhook, name: lookup, description: Looks up orders., url: "https://api.example.com/o?shop={{ metadata.shop }}"}
  - {type: server, subtype: knowledge, name: manuals, description: Searches manuals., documentFolderIds: [7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c]}
`
	large := rich
	for i := range 20 {
		large += fmt.Sprintf("  - {type: client, name: tool_%d, description: A literal tool.}\n", i)
	}
	large += "extra:\n"
	for i := range 40 {
		large += fmt.Sprintf("  future%d: literal value %d\n", i, i)
	}
	tmpls := parseTemplates(t, map[string]string{"default.yaml": rich, "large.yaml": large})
	in := expression.Input{Metadata: map[string]any{"tier": "pro", "region": "EU", "shop": "s"}, User: map[string]any{"name": "Ann"}}
	allocs := func(p *Program) float64 {
		ev := expression.Acquire(in, compiler.Layout())
		defer ev.Release()
		body := &Body{buf: make([]byte, 0, 64<<10)}
		return testing.AllocsPerRun(500, func() {
			body.buf = body.buf[:0]
			if err := p.render(ev, body); err != nil {
				t.Fatal(err)
			}
		})
	}
	if r, l := allocs(tmpls["default"].Program), allocs(tmpls["large"].Program); r != l {
		t.Errorf("rendering allocates %v times for the rich persona and %v for the same with 60 more literal fields; want the same", r, l)
	}
	req, err := render(t, tmpls["large"].Program, in)
	if err != nil {
		t.Fatal(err)
	}
	if pc := req["personaConfig"].(map[string]any); pc["future39"] != "literal value 39" || len(pc["tools"].([]any)) != 23 {
		t.Errorf("the large persona's literals are missing from %v", pc)
	}
}

// An expression that starts on a later line of a block scalar and spans lines is reported
// where its mistake is.
func TestMultiLinePlaceholderPosition(t *testing.T) {
	_, errs := Parse("p.yaml", []byte("name: n"+ids+"systemPrompt: |\n  Line one.\n  Then {{ metadata.x +\n     usr }} here.\n"), expression.NewCompiler())
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "p.yaml:7:6: systemPrompt placeholder: unknown name usr") {
		t.Errorf("errors %v, want one at p.yaml:7:6", errs)
	}
}
