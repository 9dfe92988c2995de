package rules

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/persona-router/persona-router/internal/schema"
)

type offline struct{}

func (offline) Load(url string) (any, error) { return nil, os.ErrNotExist }

// compileFileSchema compiles FileSchema, as its JSON text. Some editors assert formats and
// some do not: a document must pass with formats asserted, and be refused without.
func compileFileSchema(t *testing.T, assertFormat bool) *jsonschema.Schema {
	t.Helper()
	text, err := json.Marshal(FileSchema())
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
	if err := c.AddResource(FileSchemaID, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(FileSchemaID)
	if err != nil {
		t.Fatalf("FileSchema does not compile: %v", err)
	}
	return s
}

// yamlValue decodes YAML as the JSON values an editor's validator sees.
func yamlValue(t *testing.T, text string) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(text), &v); err != nil {
		t.Fatalf("YAML: %v\n%s", err, text)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// properties returns the property names of the object schema at path (a list's items are
// reached through their list) in FileSchema.
func properties(t *testing.T, path ...string) []string {
	t.Helper()
	s := FileSchema()
	for _, p := range path {
		next, ok := s["properties"].(map[string]any)[p].(map[string]any)
		if !ok {
			t.Fatalf("FileSchema has no %s", strings.Join(path, "."))
		}
		if items, ok := next["items"].(map[string]any); ok {
			next = items
		}
		s = next
	}
	var names []string
	for name, v := range s["properties"].(map[string]any) {
		if v != false {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// TestFileSchemaHasTheParsersKeys fails when the parser's key lists and the schema's members
// drift apart.
func TestFileSchemaHasTheParsersKeys(t *testing.T) {
	for _, tc := range []struct {
		keys []string
		path []string
	}{
		{fileKeys, nil},
		{ruleKeys, []string{"rules"}},
		{testKeys, []string{"tests"}},
		{requestKeys, []string{"tests", "request"}},
		{expectKeys, []string{"tests", "expect"}},
	} {
		want := slices.Sorted(slices.Values(tc.keys))
		if got := properties(t, tc.path...); !slices.Equal(got, want) {
			t.Errorf("schema of %q has %v, the parser reads %v", strings.Join(tc.path, "."), got, want)
		}
	}
}

// TestFileSchemaHasTheMetadataGrammar fails when the metadata declarations internal/schema
// reads and the schema's drift apart: the parser names the keys and types it takes when it
// refuses others.
func TestFileSchemaHasTheMetadataGrammar(t *testing.T) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("k: {type: nope, bogus: 1}"), &n); err != nil {
		t.Fatal(err)
	}
	_, errs := schema.Parse("m.yaml", n.Content[0])
	text := errs.Error()
	list := func(re string) []string {
		m := regexp.MustCompile(re).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no %s in %q", re, text)
		}
		return slices.Sorted(slices.Values(strings.Split(m[1], ", ")))
	}
	decl := FileSchema()["properties"].(map[string]any)["metadata"].(map[string]any)["additionalProperties"].(map[string]any)
	var keys []string
	for k := range decl["properties"].(map[string]any) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := list(`expected one of: ([^)]+)\)`); !slices.Equal(keys, want) {
		t.Errorf("declaration keys: schema %v, parser %v", keys, want)
	}
	types := slices.Sorted(slices.Values(decl["properties"].(map[string]any)["type"].(map[string]any)["enum"].([]string)))
	if want := list(`type must be one of ([a-z, ]+), got`); !slices.Equal(types, want) {
		t.Errorf("declaration types: schema %v, parser %v", types, want)
	}
}

func TestShippedRulesMatchTheSchema(t *testing.T) {
	s := compileFileSchema(t, true)
	paths, _ := filepath.Glob("../../rules/*.yaml")
	good, _ := filepath.Glob("../config/testdata/good/rules/*.yaml")
	paths = append(paths, good...)
	if len(paths) < 4 {
		t.Fatalf("found only %v", paths)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(yamlValue(t, string(data))); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestFileSchemaAccepts(t *testing.T) {
	s := compileFileSchema(t, true)
	for _, text := range []string{
		``,
		`{rules: ~, tests: ~, metadata: ~}`,
		`{rules: [{name: a, when: "true", persona: default, priority: -1, set: {skipGreeting: "{{ metadata.quick }}", tools: [{type: client, name: t, description: d}]}}]}`,
		`{tests: [{name: t, request: {context: x, metadata: {a: [1]}, user: {id: u}}, expect: {rule: ~, persona: default, personaConfig: {name: "", maxSessionLengthSeconds: 0, voiceDetectionOptions: {speechEnhancementLevel: 1}}, session: {clientLabel: x, sessionOptions: {videoWidth: 640}, experimental: true}}}]}`,
		`{tests: [{name: t, expect: {}}]}`,
		`{metadata: {tier: {type: string, enum: [free, pro], maxLength: 8, pattern: "^[a-z]+$"}, seats: {type: integer, min: 1, max: 100, enum: [1, 10]}, ratio: {type: number, max: 0.5}, beta: {type: boolean, enum: [true]}}}`,
	} {
		if err := s.Validate(yamlValue(t, text)); err != nil {
			t.Errorf("%s: %v", text, err)
		}
	}
}

func TestFileSchemaRefuses(t *testing.T) {
	s := compileFileSchema(t, false)
	rule := `name: a, when: "true", persona: default`
	for _, tc := range []struct{ text, want string }{
		{`{rule: []}`, "'rule' not allowed"},
		{`{rules: [{` + rule + `, prority: 5}]}`, "'prority' not allowed"},
		{`{rules: [{name: a, persona: default}]}`, "missing property 'when'"},
		{`{rules: [{` + rule + `, priority: high}]}`, "at '/rules/0/priority': got string, want integer"},
		{`{rules: [{name: "", when: "true", persona: default}]}`, "at '/rules/0/name': minLength"},
		{`{rules: [{` + rule + `, set: {avatarID: x}}]}`, "'avatarID' not allowed"},
		{`{rules: [{` + rule + `, set: {skipGreeting: "yes"}}]}`, "at '/rules/0/set/skipGreeting': got string, want boolean"},
		{`{rules: [{` + rule + `, set: {extends: base}}]}`, "'extends' not allowed"},
		{`{rules: [{` + rule + `, set: {tools: [{type: client, name: t, description: d, url: "https://x.example"}]}}]}`, "at '/rules/0/set/tools/0/url': false schema"},
		{`{rules: [{` + rule + `, set: ~}]}`, "at '/rules/0/set': got null, want object"},
		{`{tests: [{name: t}]}`, "missing property 'expect'"},
		{`{tests: [{name: t, request: {context: x, tier: pro}, expect: {}}]}`, "'tier' not allowed"},
		{`{tests: [{name: t, expect: {persona: a, ruel: b}}]}`, "'ruel' not allowed"},
		{`{tests: [{name: t, expect: {personaConfig: {avatarID: x}}}]}`, "'avatarID' not allowed"},
		{`{tests: [{name: t, expect: {personaConfig: {skipGreeting: "{{ x }}"}}}]}`, "at '/tests/0/expect/personaConfig/skipGreeting'"},
		{`{tests: [{name: t, expect: {session: {personaConfig: {}}}}]}`, "at '/tests/0/expect/session/personaConfig': false schema"},
		{`{tests: [{name: t, expect: {session: {clientLabel: 3}}}]}`, "at '/tests/0/expect/session/clientLabel'"},
		{`{metadata: {tier: {enum: [a]}}}`, "missing property 'type'"},
		{`{metadata: {tier: {type: text}}}`, "at '/metadata/tier/type': value must be one of"},
		{`{metadata: {seats: {type: integer, maxLength: 3}}}`, "at '/metadata/seats/maxLength': false schema"},
		{`{metadata: {tier: {type: string, min: 3}}}`, "at '/metadata/tier/min': false schema"},
		{`{metadata: {tier: {type: string, enum: [1]}}}`, "at '/metadata/tier/enum/0': got number, want string"},
		{`{metadata: {seats: {type: integer, enum: [1.5]}}}`, "at '/metadata/seats/enum/0': got number, want integer"},
		{`{metadata: {tier: {type: string, maxLength: -1}}}`, "at '/metadata/tier/maxLength': minimum"},
		{`{metadata: {tier: {type: string, size: 3}}}`, "'size' not allowed"},
	} {
		err := s.Validate(yamlValue(t, tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error with %q", tc.text, err, tc.want)
		}
	}
	// A pattern is a format (regex): editors that assert formats check it.
	err := compileFileSchema(t, true).Validate(yamlValue(t, `{metadata: {tier: {type: string, pattern: "(("}}}`))
	if want := "at '/metadata/tier/pattern': '((' is not valid regex"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want an error with %q", err, want)
	}
}

// The load's own bad examples are refused by the schema too.
func TestFileSchemaRefusesBadTestdata(t *testing.T) {
	s := compileFileSchema(t, false)
	for _, p := range []string{"unknown-rule-key", "wrong-types", "many-errors"} {
		paths, _ := filepath.Glob(filepath.Join("../config/testdata/bad", p, "rules/*.yaml"))
		if len(paths) == 0 {
			t.Fatalf("no rules in %s", p)
		}
		for _, path := range paths {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Validate(yamlValue(t, string(data))); err == nil {
				t.Errorf("%s: accepted", path)
			}
		}
	}
}
