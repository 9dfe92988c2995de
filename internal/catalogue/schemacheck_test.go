package catalogue_test

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/persona-router/persona-router/internal/catalogue"
)

func TestCheckJSONSchemaAccepts(t *testing.T) {
	for _, text := range []string{
		`{}`,
		`{type: object}`,
		`{type: object, properties: {order: {type: string, pattern: "^[0-9]+$", description: "The order {{ metadata.shop }} placed"}}, required: [order], additionalProperties: false}`,
		`{type: object, properties: {when: {$ref: "#/$defs/date"}, n: {type: integer, minimum: 1, maximum: 10}}, $defs: {date: {type: string, format: date}}}`,
		`{$schema: "https://json-schema.org/draft/2020-12/schema", type: object, properties: {tags: {type: array, items: {enum: [a, b]}, uniqueItems: true}}}`,
		`{$schema: "http://json-schema.org/draft-07/schema#", type: object}`,
	} {
		if err := catalogue.CheckJSONSchema(yamlValue(t, text)); err != nil {
			t.Errorf("%s: %v", text, err)
		}
	}
}

func TestCheckJSONSchemaRefuses(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{`{type: strnig}`, `"type": "strnig" is not a JSON Schema type (expected one of array, boolean, integer, null, number, object, string)`},
		{`{type: object, properties: 3}`, `"properties": 3 must be an object`},
		{`{type: object, properties: {a: 3}}`, `"properties.a": 3 is not a schema (expected an object, or true or false)`},
		{`{type: object, properties: {a: {type: [string, strnig]}}}`, `"properties.a.type[1]": "strnig" is not a JSON Schema type`},
		{`{type: object, properties: {a: {minLength: -1}}}`, `"properties.a.minLength": -1 must be at least 0`},
		{`{type: object, properties: {a: {pattern: "(("}}}`, `"properties.a.pattern": "((" is not a valid regular expression (missing closing )`},
		{`{type: object, required: a}`, `"required": "a" must be a list`},
		{`{type: object, properties: {a: {$ref: "https://example.com/address.json"}}}`, `$ref "https://example.com/address.json" points outside the schema: schemas are checked offline`},
		{`{type: object, properties: {a: {$ref: "address.json"}}}`, `$ref "address.json" points outside the schema`},
		{`{type: object, properties: {a: {$ref: "file:///etc/passwd"}}}`, `$ref "file:///etc/passwd" points outside the schema`},
		{`{type: object, properties: {a: {$ref: "#/$defs/nope"}}}`, `$ref "#/$defs/nope" points to nothing in the schema`},
		{`{$schema: "https://example.com/my-dialect", type: object}`, `"$schema": "https://example.com/my-dialect" is not a JSON Schema draft this service knows`},
		{`{type: array, items: {type: string}}`, `"type": "array" must be "object"`},
		{`[type, object]`, `must be a JSON Schema object, got a list`},
		{`{type: object, description: "` + strings.Repeat("x", 300<<10) + `"}`, `the schema is larger than 256 KiB`},
		{strings.Repeat(`{not: `, 70) + `{}` + strings.Repeat(`}`, 70), `the schema nests deeper than 64 levels`},
	} {
		err := catalogue.CheckJSONSchema(yamlValue(t, tc.text))
		switch {
		case err == nil:
			t.Errorf("%.80s: accepted", tc.text)
		case !strings.Contains(err.Error(), tc.want):
			t.Errorf("%.80s:\n got %v\nwant %s", tc.text, err, tc.want)
		case strings.Contains(err.Error(), "\n"):
			t.Errorf("%.80s: the error is not one line: %q", tc.text, err)
		}
	}
}

// A YAML decoder gives what JSON cannot hold: NaN (.nan), mappings with other keys, and
// values shared through aliases, which count each time they are used.
func TestCheckJSONSchemaRefusesWhatJSONCannotHold(t *testing.T) {
	var shared any = map[string]any{}
	for range 30 {
		shared = map[string]any{"anyOf": []any{shared, shared}}
	}
	for _, tc := range []struct {
		v    any
		want string
	}{
		{map[string]any{"type": "object", "properties": map[string]any{"a": map[string]any{"maximum": math.NaN()}}}, `"properties.a.maximum": NaN is not a JSON number`},
		{map[string]any{"type": "object", "enum": []any{map[any]any{1: "a"}}}, `"enum[0]": a mapping's keys must be strings`},
		{map[string]any{"type": "object", "not": shared}, "the schema is larger than 256 KiB"},
	} {
		if err := catalogue.CheckJSONSchema(tc.v); err == nil || err.Error() != tc.want {
			t.Errorf("got %v, want %s", err, tc.want)
		}
	}
}

// A $ref to a file is refused even when the file holds a schema: nothing is read.
func TestCheckJSONSchemaReadsNoFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "address.json")
	if err := os.WriteFile(path, []byte(`{"type": "string"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	url := "file://" + filepath.ToSlash(path)
	v := map[string]any{"type": "object", "properties": map[string]any{"a": map[string]any{"$ref": url}}}
	err := catalogue.CheckJSONSchema(v)
	if want := `$ref "` + url + `" points outside the schema`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want %s", err, want)
	}
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
