package catalogue_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/persona-router/persona-router/internal/catalogue"
	"github.com/persona-router/persona-router/internal/rules"
)

type offline struct{}

func (offline) Load(url string) (any, error) { return nil, os.ErrNotExist }

// dialect is a draft an editor may validate the generated schemas with: the one their
// $schema names (2020-12), or draft-07, which VS Code's YAML extension (Red Hat) applies
// whatever $schema says. The schemas must mean the same under both.
type dialect struct {
	name  string
	draft *jsonschema.Draft // nil: the one $schema names
}

var dialects = []dialect{{"2020-12", nil}, {"draft-07", jsonschema.Draft7}}

// compile compiles a generated schema, as its JSON text, with the validator editors' schemas
// are held to here, in the draft $schema names. Some editors assert formats (uuid, uri) and
// some do not: a document must pass with formats asserted, and be refused by the patterns
// alone.
func compile(t *testing.T, schema map[string]any, assertFormat bool) *jsonschema.Schema {
	t.Helper()
	return compileAs(t, schema, assertFormat, dialect{})
}

// compileAs is compile in dialect d: for a draft of its own, the copy compiled has no
// $schema, and the draft is the validator's default.
func compileAs(t *testing.T, schema map[string]any, assertFormat bool, d dialect) *jsonschema.Schema {
	t.Helper()
	if d.draft != nil {
		schema = maps.Clone(schema)
		delete(schema, "$schema")
	}
	text, err := json.Marshal(schema)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if d.draft != nil {
		c.DefaultDraft(d.draft)
	}
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
	if d.draft != nil && s.DraftVersion != 7 {
		t.Fatalf("compiled as draft %d, not 7", s.DraftVersion)
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

// newerKeywords are the keywords of drafts after 07, which a draft-07 validator ignores.
var newerKeywords = []string{
	"$anchor", "$dynamicAnchor", "$dynamicRef", "$recursiveAnchor", "$recursiveRef", "$vocabulary",
	"contentSchema", "dependentRequired", "dependentSchemas", "maxContains", "minContains",
	"prefixItems", "unevaluatedItems", "unevaluatedProperties",
}

// draft07Problems lists what in the schema v, at at, a draft-07 validator reads otherwise than
// a 2020-12 one: a newer keyword, a $ref beside other keywords (draft-07 ignores them), items
// as a list (a tuple in draft-07, an error in 2020-12).
func draft07Problems(v any, at string, out *[]string) {
	switch x := v.(type) {
	case []any:
		for i, item := range x {
			draft07Problems(item, fmt.Sprintf("%s/%d", at, i), out)
		}
	case map[string]any:
		if _, ok := x["$ref"]; ok && len(x) > 1 {
			*out = append(*out, at+": $ref beside other keywords")
		}
		for _, k := range slices.Sorted(maps.Keys(x)) {
			item := x[k]
			if slices.Contains(newerKeywords, k) {
				*out = append(*out, at+"/"+k)
			}
			switch k {
			case "enum", "const", "default", "examples":
				// Values, not schemas.
			case "properties", "patternProperties", "$defs", "definitions":
				// Names, then schemas.
				for _, name := range slices.Sorted(maps.Keys(item.(map[string]any))) {
					draft07Problems(item.(map[string]any)[name], at+"/"+k+"/"+name, out)
				}
			case "items":
				if _, ok := item.([]any); ok {
					*out = append(*out, at+"/items: a list")
				}
				draft07Problems(item, at+"/"+k, out)
			default:
				draft07Problems(item, at+"/"+k, out)
			}
		}
	}
}

// TestSchemasMeanTheSameInDraft07 fails when a generated schema uses what draft-07 reads
// otherwise; the tables run under both drafts check that they mean the same.
func TestSchemasMeanTheSameInDraft07(t *testing.T) {
	for name, s := range map[string]map[string]any{
		"persona": catalogue.PersonaFileSchema(),
		"set":     catalogue.SetSchema(),
		"rules":   rules.FileSchema(),
		"partial": catalogue.PartialSchema(catalogue.PersonaConfig),
	} {
		var doc any
		if err := json.Unmarshal([]byte(mustJSON(s)), &doc); err != nil {
			t.Fatal(err)
		}
		var problems []string
		draft07Problems(doc, "#", &problems)
		for _, p := range problems {
			t.Errorf("%s schema: %s", name, p)
		}
	}
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
		id, _ := s["$id"].(string)
		title, _ := s["title"].(string)
		if s["$schema"] != catalogue.Dialect || id == "" || title == "" {
			t.Errorf("%s schema lacks $schema, $id or title", name)
		}
	}
}

func TestShippedPersonasMatchTheSchema(t *testing.T) {
	files := readFiles(t, "../../personas/*.yaml")
	for p, text := range readFiles(t, "../config/testdata/good/personas/*.yaml") {
		files[p] = text
	}
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			s := compileAs(t, catalogue.PersonaFileSchema(), true, d)
			for p, text := range files {
				if err := s.Validate(yamlValue(t, text)); err != nil {
					t.Errorf("%s: %v", p, err)
				}
			}
		})
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

// paths lists the path of every field of f's members, as the docs' field table names them.
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
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) { testPersonaSchemaAccepts(t, compileAs(t, catalogue.PersonaFileSchema(), true, d)) })
	}
}

func testPersonaSchemaAccepts(t *testing.T, s *jsonschema.Schema) {
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
		{"videoHeight alone in a persona that extends", `{session: {sessionOptions: {videoHeight: 480}}}`},
		{"videoWidth and videoHeight without extends", `{extends: ~, session: {sessionOptions: {videoWidth: 640, videoHeight: 480}}}`},
		{"neither videoWidth nor videoHeight without extends", `{extends: ~, session: {sessionOptions: {sessionReplay: {enableSessionReplay: false}}}}`},
		{"videoWidth and videoHeight both removed without extends", `{extends: ~, session: {sessionOptions: {videoWidth: ~, videoHeight: ~}}}`},
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
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) { testPersonaSchemaRefuses(t, compileAs(t, catalogue.PersonaFileSchema(), false, d)) })
	}
}

func testPersonaSchemaRefuses(t *testing.T, s *jsonschema.Schema) {
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
		{"a header name with a space", `{tools: [` + webhook + `, url: "https://x.example", headers: {"X Shop": a}}]}`, "invalid propertyName 'X Shop'"},
		{"a session given as a placeholder", `{session: "{{ metadata.s }}"}`, "at '/session'"},
		{"extra given as a placeholder", `{extra: "{{ metadata.x }}"}`, "at '/extra'"},
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
		{"videoWidth without videoHeight without extends", `{extends: ~, session: {sessionOptions: {videoWidth: 640}}}`, "at '/session/sessionOptions': missing property 'videoHeight'"},
		{"videoHeight without videoWidth without extends", `{extends: ~, session: {sessionOptions: {videoHeight: 480}}}`, "at '/session/sessionOptions': missing property 'videoWidth'"},
		{"videoWidth removed, videoHeight left, without extends", `{extends: ~, session: {sessionOptions: {videoWidth: ~}}}`, "at '/session/sessionOptions': missing property 'videoHeight'"},
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

// rulesFiles reads the shipped rules files and the load's good ones.
func rulesFiles(t *testing.T) map[string]string {
	t.Helper()
	files := readFiles(t, "../../rules/*.yaml")
	for p, text := range readFiles(t, "../config/testdata/good/rules/*.yaml") {
		files[p] = text
	}
	return files
}

// Sets a rule may give, and sets it may not, beyond those of the rules files.
var (
	goodSets = []string{
		strings.Replace(everything, "extends: base\n", "", 1),
		// A set is merged over its persona, which may complete its groups.
		`{directorNotes: {expressivity: 0.5}, session: {sessionOptions: {videoWidth: 640}}}`,
	}
	badSets = []string{
		`{extends: base}`,
		`{avatarID: 30fa96d0-26c4-4e55-94a0-517025942e18}`,
		`{skipGreeting: "yes"}`,
		`{directorNotes: {presetStyle: calm, customStylePrompt: "Calm."}}`,
		`{avatarId: cara}`,
		`{tools: [{type: client, name: t, description: d, url: "https://x.example"}]}`,
	}
)

func TestSetSchema(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			s, strict := compileAs(t, catalogue.SetSchema(), true, d), compileAs(t, catalogue.SetSchema(), false, d)
			sets := 0
			for p, text := range rulesFiles(t) {
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
			for _, good := range goodSets {
				if err := s.Validate(yamlValue(t, good)); err != nil {
					t.Errorf("%.80s: %v", good, err)
				}
			}
			for _, bad := range badSets {
				if err := strict.Validate(yamlValue(t, bad)); err == nil {
					t.Errorf("set accepted %s", bad)
				}
			}
		})
	}
}

// The rules file schema holds the set schema under a rule, with the $defs it refers to: the
// rules files and sets mean the same in it, in both dialects.
func TestRulesSchema(t *testing.T) {
	rule := func(set string) any {
		return map[string]any{"rules": []any{map[string]any{"name": "r", "when": "true", "persona": "default", "set": yamlValue(t, set)}}}
	}
	var bad []string
	for _, p := range []string{"unknown-rule-key", "wrong-types", "many-errors"} {
		for _, text := range readFiles(t, filepath.Join("../config/testdata/bad", p, "rules/*.yaml")) {
			bad = append(bad, text)
		}
	}
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			s, strict := compileAs(t, rules.FileSchema(), true, d), compileAs(t, rules.FileSchema(), false, d)
			for p, text := range rulesFiles(t) {
				if err := s.Validate(yamlValue(t, text)); err != nil {
					t.Errorf("%s: %v", p, err)
				}
			}
			for _, good := range goodSets {
				if err := s.Validate(rule(good)); err != nil {
					t.Errorf("a rule setting %.80s: %v", good, err)
				}
			}
			for _, set := range badSets {
				if err := strict.Validate(rule(set)); err == nil {
					t.Errorf("accepted a rule setting %s", set)
				}
			}
			for _, text := range bad {
				if err := strict.Validate(yamlValue(t, text)); err == nil {
					t.Errorf("accepted %.200s", text)
				}
			}
		})
	}
}

func TestPartialSchema(t *testing.T) {
	partial := catalogue.PartialSchema(catalogue.PersonaConfig)
	partial["$id"] = "mem:///partial.json"
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			testPartialSchema(t, compileAs(t, partial, true, d), compileAs(t, partial, false, d))
		})
	}
}

func testPartialSchema(t *testing.T, s, strict *jsonschema.Schema) {
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
	for _, d := range dialects {
		s := compileAs(t, catalogue.PersonaFileSchema(), false, d)
		for _, p := range []string{"bad-llm-id/personas/child.yaml", "non-uuid/personas/default.yaml", "unknown-persona-key/personas/sales.yaml", "many-errors/personas/sales.yaml"} {
			data, err := os.ReadFile(filepath.Join("../config/testdata/bad", p))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Validate(yamlValue(t, string(data))); err == nil {
				t.Errorf("%s: %s: accepted", d.name, p)
			}
		}
	}
}
