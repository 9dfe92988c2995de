package catalogue_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/persona-router/persona-router/internal/catalogue"
)

type offline struct{}

func (offline) Load(url string) (any, error) { return nil, os.ErrNotExist }

// compile compiles a generated schema, as its JSON text, with the validator editors' schemas
// are held to here. Some editors assert formats (uuid, uri) and some do not: a document must
// pass with formats asserted, and be refused by the patterns alone.
func compile(t *testing.T, schema map[string]any, assertFormat bool) *jsonschema.Schema {
	t.Helper()
	text, err := json.Marshal(schema)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if assertFormat {
		c.AssertFormat()
	}
	c.UseLoader(offline{})
	id := schema["$id"].(string)
	if err := c.AddResource(id, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(id)
	if err != nil {
		t.Fatalf("the generated schema does not compile: %v", err)
	}
	return s
}

func readFiles(t *testing.T, pattern string) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(pattern)
	if err != nil || len(paths) == 0 {
		t.Fatalf("no files match %s (%v)", pattern, err)
	}
	files := make(map[string]string)
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[p] = string(data)
	}
	return files
}

func TestSchemasAreValidJSONSchemas(t *testing.T) {
	for name, s := range map[string]map[string]any{"persona": catalogue.PersonaFileSchema(), "set": catalogue.SetSchema()} {
		var doc any
		if err := json.Unmarshal([]byte(mustJSON(s)), &doc); err != nil {
			t.Fatal(err)
		}
		if err := catalogue.CheckJSONSchema(doc); err != nil {
			t.Errorf("%s schema: %v", name, err)
		}
		if s["$schema"] != catalogue.Dialect || s["$id"] == "" || s["title"] == "" {
			t.Errorf("%s schema lacks $schema, $id or title", name)
		}
	}
}

func TestShippedPersonasMatchTheSchema(t *testing.T) {
	s := compile(t, catalogue.PersonaFileSchema(), true)
	files := readFiles(t, "../../personas/*.yaml")
	for p, text := range readFiles(t, "../config/testdata/good/personas/*.yaml") {
		files[p] = text
	}
	for p, text := range files {
		if err := s.Validate(yamlValue(t, text)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// everything is a persona file giving every field of the catalogue, placeholders in typed
// fields included.
const everything = `
name: "Cara for {{ user.name ?? 'you' }}"
avatarId: "{{ metadata.avatar ?? '30fa96d0-26c4-4e55-94a0-517025942e18' }}"
voiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b
llmId: CUSTOMER_CLIENT_V1
systemPrompt: "Help {{ user.name }}."
languageCode: "{{ metadata.lang }}"
maxSessionLengthSeconds: "{{ user.plan == 'pro' ? 1800 : 300 }}"
avatarModel: cara-3
skipGreeting: true
zeroDataRetention: "{{ metadata.region == 'EU' }}"
enableAudioPassthrough: false
voiceDetectionOptions:
  endOfSpeechSensitivity: 0.5
  silenceBeforeSkipTurnSeconds: "{{ metadata.patience }}"
  silenceBeforeSessionEndSeconds: 600
  silenceBeforeAutoEndTurnSeconds: 0.5
  speechEnhancementLevel: 1
voiceGenerationOptions: {speed: 1.1, volume: 0.8, stability: 0.5, similarityBoost: 0.7, style: 0, emotion: calm, useSpeakerBoost: true}
directorNotes: {presetStyle: "{{ metadata.style }}", expressivity: 0.7}
toolIds: [0934d97d-0c3a-4f33-91b0-5e136a0ef466, "{{ metadata.toolId }}"]
tools:
  - type: client
    name: open_page
    description: Opens a page in the browser.
    parameters: {type: object, properties: {page: {type: string, description: "A page of {{ metadata.shop }}"}}, required: [page]}
  - type: server
    subtype: webhook
    name: lookup_order
    description: Looks an order up.
    url: "https://api.example.com/{{ metadata.shop }}/orders"
    method: GET
    headers: {Authorization: "Bearer {{ metadata.token }}", X-Shop: acme}
    awaitResponse: true
    disableInterruptions: "{{ metadata.busy }}"
  - type: server
    subtype: knowledge
    name: search_docs
    description: Searches the manuals.
    documentFolderIds: [7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c]
  - "{{ metadata.extraTool }}"
extends: base
session:
  clientLabel: "shop/{{ metadata.shop }}"
  sessionOptions:
    sessionReplay: {enableSessionReplay: true}
    videoWidth: 1280
    videoHeight: 720
  extra: {experimentalFlag: true, region: "{{ metadata.region }}"}
extra: {futureField: [1, {a: b}], other: null}
`

// stateful is a persona in stateful mode: personaId, which nothing else may accompany but
// what is not personaConfig.
const stateful = `
personaId: "{{ metadata.savedPersona ?? '7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c' }}"
extends: base
name: ~
session: {clientLabel: lab}
`

// customStyle gives the other member of directorNotes' one-of group.
const customStyle = `
extends: base
directorNotes: {customStylePrompt: "Calm and warm."}
`

// paths lists the path of every field of f's members, as the README's table names them.
func paths(f *catalogue.Field, prefix string) []string {
	var out []string
	for _, m := range f.Fields {
		out = append(out, prefix+m.Name)
		switch {
		case m.Kind == catalogue.Object:
			out = append(out, paths(m, prefix+m.Name+".")...)
		case m.Kind == catalogue.List && m.Items.Kind == catalogue.Object:
			out = append(out, paths(m.Items, prefix+m.Name+"[].")...)
		}
	}
	return out
}

// given lists the paths of the fields v gives, as paths names them.
func given(v any, prefix string, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, item := range x {
			out[prefix+k] = true
			if k != "extra" && k != "parameters" && k != "headers" {
				given(item, prefix+k+".", out)
			}
		}
	case []any:
		for _, item := range x {
			given(item, strings.TrimSuffix(prefix, ".")+"[].", out)
		}
	}
}

func TestEverythingGivesEveryField(t *testing.T) {
	got := make(map[string]bool)
	given(yamlValue(t, everything), "", got)
	given(yamlValue(t, stateful), "", got)
	given(yamlValue(t, customStyle), "", got)
	for _, p := range paths(catalogue.PersonaFile, "") {
		if !got[p] {
			t.Errorf("the everything document lacks %s", p)
		}
	}
}

// edit returns the persona file text with the top-level keys of change replaced.
func edit(t *testing.T, text, change string) any {
	t.Helper()
	doc := yamlValue(t, text).(map[string]any)
	for k, v := range yamlValue(t, change).(map[string]any) {
		doc[k] = v
	}
	return doc
}

func TestPersonaSchemaAccepts(t *testing.T) {
	s := compile(t, catalogue.PersonaFileSchema(), true)
	for _, doc := range []string{stateful, customStyle} {
		if err := s.Validate(yamlValue(t, doc)); err != nil {
			t.Errorf("refused %s: %v", doc, err)
		}
	}
	for _, tc := range []struct{ name, change string }{
		{"every field", `{}`},
		{"null removes inherited fields", `{llmId: ~, voiceDetectionOptions: {endOfSpeechSensitivity: ~}, session: {clientLabel: ~}}`},
		{"a whole object as one placeholder", `{voiceDetectionOptions: "{{ metadata.vad }}", tools: "{{ metadata.tools }}"}`},
		{"a placeholder where a pattern applies", `{avatarId: "{{ metadata.avatar }}", languageCode: "{{ metadata.lang ?? 'en' }}"}`},
		{"an llmId left empty", `{llmId: ""}`},
		{"an http webhook to localhost", `{tools: [{type: server, subtype: webhook, name: t, description: d, url: "http://localhost:8080/hook"}]}`},
		{"an empty directorNotes in a persona that extends", `{directorNotes: {expressivity: 0.5}}`},
		{"a custom style replacing an inherited preset", `{directorNotes: {presetStyle: ~, customStylePrompt: "Calm."}}`},
		{"videoWidth alone in a persona that extends", `{session: {sessionOptions: {videoWidth: 640}}}`},
		{"exactly one of presetStyle and customStylePrompt without extends", `{extends: ~, directorNotes: {customStylePrompt: "Calm."}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Validate(edit(t, everything, tc.change)); err != nil {
				t.Errorf("refused: %v", err)
			}
		})
	}
}

func TestPersonaSchemaRefuses(t *testing.T) {
	s := compile(t, catalogue.PersonaFileSchema(), false)
	webhook := `{type: server, subtype: webhook, name: t, description: d`
	for _, tc := range []struct{ name, change, want string }{
		{"an unknown key", `{avatarID: 30fa96d0-26c4-4e55-94a0-517025942e18}`, "'avatarID' not allowed"},
		{"a string for a boolean", `{skipGreeting: "yes"}`, "at '/skipGreeting': got string, want boolean"},
		{"text around a placeholder for a number", `{maxSessionLengthSeconds: "{{ 1 }}0"}`, "at '/maxSessionLengthSeconds': '{{ 1 }}0' does not match"},
		{"two placeholders for a boolean", `{zeroDataRetention: "{{ a }}{{ b }}"}`, "at '/zeroDataRetention': '{{ a }}{{ b }}' does not match"},
		{"a number out of range", `{voiceDetectionOptions: {endOfSpeechSensitivity: 1.5}}`, "at '/voiceDetectionOptions/endOfSpeechSensitivity': maximum"},
		{"a fraction for an integer", `{maxSessionLengthSeconds: 1.5}`, "at '/maxSessionLengthSeconds': got number, want integer"},
		{"a zero session length", `{maxSessionLengthSeconds: 0}`, "at '/maxSessionLengthSeconds': minimum"},
		{"an unknown nested key", `{voiceDetectionOptions: {sensitivity: 0.5}}`, "'sensitivity' not allowed"},
		{"a literal that is not a UUID", `{voiceId: not-a-uuid}`, "at '/voiceId': 'not-a-uuid'"},
		{"a brace UUID", `{voiceId: "{6bfbe25a-979d-40f3-a92b-5394170af54b}"}`, "at '/voiceId': '{6bfbe25a"},
		{"a lower-case llmId constant", `{llmId: customer_client}`, "at '/llmId': 'customer_client' does not match pattern '^(?:"},
		{"a language code of three letters", `{languageCode: eng}`, "at '/languageCode': 'eng' does not match pattern '^[a-z]{2}$'"},
		{"an empty name", `{name: ""}`, "at '/name': minLength"},
		{"a webhook without url", `{tools: [` + webhook + `}]}`, "at '/tools/0': missing property 'url'"},
		{"a webhook on plain http", `{tools: [` + webhook + `, url: "http://api.example.com/hook"}]}`, "at '/tools/0/url': 'http://api.example.com/hook' does not match pattern '^(?:https"},
		{"a webhook with a made-up method", `{tools: [` + webhook + `, url: "https://x.example", method: FETCH}]}`, "at '/tools/0/method': value must be one of"},
		{"a client tool with a url", `{tools: [{type: client, name: t, description: d, url: "https://x.example"}]}`, "at '/tools/0/url': false schema"},
		{"a client tool with headers", `{tools: [{type: client, name: t, description: d, headers: {A: b}}]}`, "at '/tools/0/headers': false schema"},
		{"a server tool without subtype", `{tools: [{type: server, name: t, description: d}]}`, "at '/tools/0': missing property 'subtype'"},
		{"a client tool with a subtype", `{tools: [{type: client, subtype: webhook, name: t, description: d, url: "https://x.example"}]}`, "at '/tools/0/subtype': false schema"},
		{"a tool without description", `{tools: [{type: client, name: t}]}`, "at '/tools/0': missing property 'description'"},
		{"a tool type as a placeholder", `{tools: [{type: "{{ metadata.kind }}", name: t, description: d}]}`, "at '/tools/0/type': value must be one of"},
		{"a tool name with a space", `{tools: [{type: client, name: "open page", description: d}]}`, "at '/tools/0/name': 'open page' does not match pattern '^[A-Za-z0-9_-]"},
		{"a knowledge tool without folders", `{tools: [{type: server, subtype: knowledge, name: t, description: d}]}`, "at '/tools/0': missing property 'documentFolderIds'"},
		{"a knowledge tool with no folder", `{tools: [{type: server, subtype: knowledge, name: t, description: d, documentFolderIds: []}]}`, "at '/tools/0/documentFolderIds': minItems"},
		{"a knowledge tool with a url", `{tools: [{type: server, subtype: knowledge, name: t, description: d, documentFolderIds: [7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c], url: "https://x.example"}]}`, "at '/tools/0/url': false schema"},
		{"parameters that are not an object", `{tools: [{type: client, name: t, description: d, parameters: [1]}]}`, "at '/tools/0/parameters': got array, want object"},
		{"a null tool", `{tools: [~]}`, "at '/tools/0': got null, want object"},
		{"a toolId that is not a UUID", `{toolIds: [end_call]}`, "at '/toolIds/0': 'end_call'"},
		{"both presetStyle and customStylePrompt", `{directorNotes: {presetStyle: calm, customStylePrompt: "Calm."}}`, "at '/directorNotes': 'not' failed"},
		{"neither presetStyle nor customStylePrompt without extends", `{extends: ~, directorNotes: {expressivity: 0.5}}`, "at '/directorNotes': 'oneOf' failed, none matched"},
		{"videoWidth without videoHeight without extends", `{extends: ~, session: {sessionOptions: {videoWidth: 640}}}`, "'videoHeight' required, if 'videoWidth' exists"},
		{"a clientLabel over 128 characters", `{session: {clientLabel: "` + strings.Repeat("x", 129) + `"}}`, "at '/session/clientLabel': maxLength"},
		{"an unknown session key", `{session: {label: x}}`, "'label' not allowed"},
		{"a known field in extra", `{extra: {avatarId: 30fa96d0-26c4-4e55-94a0-517025942e18}}`, "invalid propertyName 'avatarId'"},
		{"a known field in session.extra", `{session: {extra: {clientLabel: x}}}`, "invalid propertyName 'clientLabel'"},
		{"extends as a placeholder", `{extends: "{{ metadata.base }}"}`, "at '/extends': 'not' failed"},
		{"personaId beside other fields", `{personaId: 7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c, name: Cara}`, "at '/name': got string, want null"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Validate(edit(t, everything, tc.change))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: got %v, want an error with %q", tc.change, err, tc.want)
			}
		})
	}
}

func TestSetSchema(t *testing.T) {
	s, strict := compile(t, catalogue.SetSchema(), true), compile(t, catalogue.SetSchema(), false)
	files := readFiles(t, "../../rules/*.yaml")
	for p, text := range readFiles(t, "../config/testdata/good/rules/*.yaml") {
		files[p] = text
	}
	sets := 0
	for p, text := range files {
		var f struct{ Rules []map[string]any }
		if err := yaml.Unmarshal([]byte(text), &f); err != nil {
			t.Fatal(err)
		}
		for _, r := range f.Rules {
			if set, ok := r["set"]; ok {
				b, _ := yaml.Marshal(set)
				if err := s.Validate(yamlValue(t, string(b))); err != nil {
					t.Errorf("%s: rule %v: %v", p, r["name"], err)
				}
				sets++
			}
		}
	}
	if sets == 0 {
		t.Fatal("no rule has a set")
	}
	good := strings.Replace(everything, "extends: base\n", "", 1)
	if err := s.Validate(yamlValue(t, good)); err != nil {
		t.Errorf("every field but extends: %v", err)
	}
	// A set is merged over its persona, which may complete its groups.
	over := `{directorNotes: {expressivity: 0.5}, session: {sessionOptions: {videoWidth: 640}}}`
	if err := s.Validate(yamlValue(t, over)); err != nil {
		t.Errorf("%s: %v", over, err)
	}
	for _, bad := range []string{
		`{extends: base}`,
		`{avatarID: 30fa96d0-26c4-4e55-94a0-517025942e18}`,
		`{skipGreeting: "yes"}`,
		`{directorNotes: {presetStyle: calm, customStylePrompt: "Calm."}}`,
		`{avatarId: cara}`,
	} {
		if err := strict.Validate(yamlValue(t, bad)); err == nil {
			t.Errorf("set accepted %s", bad)
		}
	}
}

func TestPartialSchema(t *testing.T) {
	partial := catalogue.PartialSchema(catalogue.PersonaConfig)
	partial["$id"] = "mem:///partial.json"
	s, strict := compile(t, partial, true), compile(t, partial, false)
	for _, good := range []string{
		`{}`,
		`{name: Cara}`,
		`{personaId: 7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c, name: ""}`,
		`{maxSessionLengthSeconds: 0, llmId: ~}`,
		`{directorNotes: {expressivity: 0.5}}`,
		`{tools: [{name: t}, {type: server, subtype: webhook, url: "https://x.example"}]}`,
	} {
		if err := s.Validate(yamlValue(t, good)); err != nil {
			t.Errorf("refused %s: %v", good, err)
		}
	}
	for _, bad := range []string{
		`{avatarID: x}`,
		`{maxSessionLengthSeconds: "{{ 1 }}"}`,
		`{avatarId: "{{ metadata.avatar }}"}`,
		`{avatarId: cara}`,
		`{voiceDetectionOptions: {endOfSpeechSensitivity: 2}}`,
		`{tools: [{type: client, url: "https://x.example"}]}`,
	} {
		if err := strict.Validate(yamlValue(t, bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestSchemaDescribesEveryField(t *testing.T) {
	text, err := json.Marshal(catalogue.PersonaFileSchema())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths(catalogue.PersonaFile, "") {
		f := lookup(catalogue.PersonaFile, p)
		if f.Doc != "" && !bytes.Contains(text, []byte(strings.TrimSuffix(mustJSON(f.Doc), `"`))) {
			t.Errorf("the schema lacks the description of %s", p)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// lookup returns the field at a path of paths.
func lookup(f *catalogue.Field, path string) *catalogue.Field {
	for _, part := range strings.Split(path, ".") {
		name, list := strings.CutSuffix(part, "[]")
		f = f.Member(name)
		if list {
			f = f.Items
		}
	}
	return f
}

func TestPlaceholderDefsMatchOnlyPlaceholders(t *testing.T) {
	defs := catalogue.PersonaFileSchema()["$defs"].(map[string]any)
	for _, tc := range []struct {
		def     string
		matches []string
		misses  []string
	}{
		{"placeholder", []string{"{{ a }}", "x {{ a }} y", "{{ a }}{{ b }}", "a\n{{ b\n}}"}, []string{"x", "{{ a", "a }}", "{ a }"}},
		{"expression", []string{"{{ a }}", "{{ a ? {'b': 1} : 2 }}", "{{}}", "{{ a\n}}"}, []string{" {{ a }}", "{{ a }} ", "{{ a }}{{ b }}", "{{ a }}}", "x{{ a }}"}},
	} {
		def := defs[tc.def].(map[string]any)
		def["$id"] = "mem:///" + tc.def + ".json"
		s := compile(t, def, false)
		for _, m := range tc.matches {
			if err := s.Validate(m); err != nil {
				t.Errorf("%s refused %q", tc.def, m)
			}
		}
		for _, m := range tc.misses {
			if err := s.Validate(m); err == nil {
				t.Errorf("%s accepted %q", tc.def, m)
			}
		}
	}
}

// The load's own bad examples are refused by the schema too.
func TestPersonaSchemaRefusesBadTestdata(t *testing.T) {
	s := compile(t, catalogue.PersonaFileSchema(), false)
	for _, p := range []string{"bad-llm-id/personas/child.yaml", "non-uuid/personas/default.yaml", "unknown-persona-key/personas/sales.yaml", "many-errors/personas/sales.yaml"} {
		data, err := os.ReadFile(filepath.Join("../config/testdata/bad", p))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(yamlValue(t, string(data))); err == nil {
			t.Errorf("%s: accepted", p)
		}
	}
}
