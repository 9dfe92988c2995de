package catalogue_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
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
	deep := slices.Repeat([]string{"not"}, 65)
	for _, tc := range []struct {
		text, want string
		// path is the SchemaError's Path; nil for an error that is not a SchemaError.
		path []string
	}{
		{`{type: strnig}`, `"type": "strnig" is not a JSON Schema type (expected one of array, boolean, integer, null, number, object, string)`, []string{"type"}},
		{`{type: object, properties: {page: {type: strnig}}}`, `"properties.page.type": "strnig" is not a JSON Schema type (expected one of`, []string{"properties", "page", "type"}},
		{`{type: object, properties: 3}`, `"properties": 3 must be an object`, []string{"properties"}},
		{`{type: object, properties: {a: 3}}`, `"properties.a": 3 is not a schema (expected an object, or true or false)`, []string{"properties", "a"}},
		{`{type: object, properties: {a: {type: [string, strnig]}}}`, `"properties.a.type[1]": "strnig" is not a JSON Schema type`, []string{"properties", "a", "type", "1"}},
		{`{type: object, properties: {a: {minLength: -1}}}`, `"properties.a.minLength": -1 must be at least 0`, []string{"properties", "a", "minLength"}},
		{`{type: object, properties: {a: {pattern: "(("}}}`, `"properties.a.pattern": "((" is not a valid regular expression (missing closing )`, []string{"properties", "a", "pattern"}},
		{`{type: object, required: a}`, `"required": "a" must be a list`, []string{"required"}},
		{`{type: object, properties: {a: {$ref: "https://example.com/address.json"}}}`, `$ref "https://example.com/address.json" points outside the schema: schemas are checked offline`, []string{"properties", "a", "$ref"}},
		{`{type: object, properties: {a: {$ref: "address.json"}}}`, `$ref "address.json" points outside the schema`, []string{"properties", "a", "$ref"}},
		{`{type: object, properties: {a: {$ref: "file:///etc/passwd"}}}`, `$ref "file:///etc/passwd" points outside the schema`, []string{"properties", "a", "$ref"}},
		{`{type: object, properties: {a: {$ref: "#/$defs/nope"}}}`, `$ref "#/$defs/nope" points to nothing in the schema`, []string{"properties", "a", "$ref"}},
		{`{$schema: "https://example.com/my-dialect", type: object}`, `"$schema": "https://example.com/my-dialect" is not a JSON Schema draft this service knows`, []string{"$schema"}},
		{`{type: array, items: {type: string}}`, `"type": "array" must be "object"`, []string{"type"}},
		{`[type, object]`, `must be a JSON Schema object, got a list`, []string{}},
		{`{type: object, description: "` + strings.Repeat("x", 300<<10) + `"}`, `the schema is larger than 256 KiB`, nil},
		{strings.Repeat(`{not: `, 70) + `{}` + strings.Repeat(`}`, 70), `the schema nests deeper than 64 levels`, deep},
		// The place of a problem is as written: keys are not escaped, lists are indexed.
		{`{type: object, properties: {"a/b~c": {items: {type: strnig}}}}`, `"properties.a/b~c.items.type": "strnig" is not a JSON Schema type`, []string{"properties", "a/b~c", "items", "type"}},
		{`{type: object, allOf: [{}, {required: [a, b, a]}]}`, `"allOf[1].required[2]": "a" is already in the list, at [0]`, []string{"allOf", "1", "required", "2"}},
		// A regular expression may be a key: the place is its member.
		{`{type: object, patternProperties: {"((": {}}}`, `"patternProperties.((": "((" is not a valid regular expression (missing closing )`, []string{"patternProperties", "(("}},
		{`{type: object, properties: {a: {patternProperties: {"^x": {}, "((": {type: string}}}}}`, `"properties.a.patternProperties.((": "((" is not a valid regular expression`, []string{"properties", "a", "patternProperties", "(("}},
		{`{$schema: "http://json-schema.org/draft-07/schema#", type: object, properties: {a: {patternProperties: {"((": {}}}}}`, `"properties.a.patternProperties.((": "((" is not a valid regular expression`, []string{"properties", "a", "patternProperties", "(("}},
		// A reference is found where it is written, resolved against the $id around it, and
		// among schemas before the values that are not schemas (enum, const, default).
		{`{type: object, properties: {a: {$ref: "#nowhere"}}}`, `$ref "#nowhere" points to nothing in the schema`, []string{"properties", "a", "$ref"}},
		{`{$id: "https://example.com/root.json", type: object, properties: {a: {$ref: "address.json"}}}`, `$ref "address.json" points outside the schema`, []string{"properties", "a", "$ref"}},
		{`{type: object, default: {$ref: "https://x.example/a"}, enum: [{$ref: "https://x.example/a"}], properties: {a: {items: {$ref: "https://x.example/a"}}}}`, `$ref "https://x.example/a" points outside`, []string{"properties", "a", "items", "$ref"}},
		{`{type: object, properties: {a: {$ref: "#/$defs/a"}}, $defs: {a: {items: {$ref: "#/$defs/b"}}}}`, `$ref "#/$defs/b" points to nothing`, []string{"$defs", "a", "items", "$ref"}},
		{`{type: object, properties: {a: {$ref: "#/x-b"}}, x-b: {$ref: "https://x.example/b"}}`, `$ref "https://x.example/b" points outside`, []string{"x-b", "$ref"}},
		{`{type: object, properties: {a: {$dynamicRef: "https://x.example/c#c"}}}`, `$dynamicRef "https://x.example/c#c" points outside`, []string{"properties", "a", "$dynamicRef"}},
		{`{type: object, properties: {a: {$id: "https://x.example/a.json", $schema: "https://example.com/my-dialect"}}}`, `"properties.a.$schema": "https://example.com/my-dialect" is not a JSON Schema draft`, []string{"properties", "a", "$schema"}},
		{`{type: object, $defs: {a: {$anchor: x}, b: {$anchor: x}}}`, `"$defs.b.$anchor": $anchor "x" is already the $anchor of "$defs.a"`, []string{"$defs", "b", "$anchor"}},
		{`{type: object, $defs: {a: {$id: "https://x.example/a"}, b: {$id: "https://x.example/a"}}}`, `"$defs.b.$id": $id "https://x.example/a" is already the $id of "$defs.a"`, []string{"$defs", "b", "$id"}},
	} {
		err := catalogue.CheckJSONSchema(yamlValue(t, tc.text))
		var se *catalogue.SchemaError
		switch {
		case err == nil:
			t.Errorf("%.80s: accepted", tc.text)
		case !strings.Contains(err.Error(), tc.want):
			t.Errorf("%.80s:\n got %v\nwant %s", tc.text, err, tc.want)
		case strings.Contains(err.Error(), "\n"):
			t.Errorf("%.80s: the error is not one line: %q", tc.text, err)
		case tc.path == nil && errors.As(err, &se):
			t.Errorf("%.80s: a SchemaError at %q, want a plain error", tc.text, se.Path)
		case tc.path != nil && !errors.As(err, &se):
			t.Errorf("%.80s: %T, want a SchemaError at %q", tc.text, err, tc.path)
		case tc.path != nil && !slices.Equal(se.Path, tc.path):
			t.Errorf("%.80s: at %q, want %q", tc.text, se.Path, tc.path)
		}
	}
}

// Of two bad keys, either may be reported, at its own place.
func TestCheckJSONSchemaNamesOneOfTwoBadKeys(t *testing.T) {
	err := catalogue.CheckJSONSchema(yamlValue(t, `{type: object, properties: {a: {patternProperties: {"((": {}, "[": {}}}}}`))
	var se *catalogue.SchemaError
	if !errors.As(err, &se) || len(se.Path) != 4 {
		t.Fatalf("got %#v, want a SchemaError at a key", err)
	}
	key := se.Path[3]
	if !slices.Equal(se.Path[:3], []string{"properties", "a", "patternProperties"}) || (key != "((" && key != "[") {
		t.Errorf("at %q", se.Path)
	}
	if want := `"properties.a.patternProperties.` + key + `": "` + key + `" is not a valid regular expression`; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want %s", err, want)
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
		path []string // nil: not a SchemaError
	}{
		{map[string]any{"type": "object", "properties": map[string]any{"a": map[string]any{"maximum": math.NaN()}}}, `"properties.a.maximum": NaN is not a JSON number`, []string{"properties", "a", "maximum"}},
		{map[string]any{"type": "object", "enum": []any{map[any]any{1: "a"}}}, `"enum[0]": a mapping's keys must be strings`, []string{"enum", "0"}},
		{map[string]any{"type": "object", "items": []any{"a", []string{"b"}}}, `"items[1]": []string is not a JSON value`, []string{"items", "1"}},
		{map[any]any{"type": "object"}, `the schema: a mapping's keys must be strings`, []string{}},
		{map[string]any{"type": "object", "not": shared}, "the schema is larger than 256 KiB", nil},
	} {
		err := catalogue.CheckJSONSchema(tc.v)
		if err == nil || err.Error() != tc.want {
			t.Errorf("got %v, want %s", err, tc.want)
			continue
		}
		var se *catalogue.SchemaError
		if ok := errors.As(err, &se); ok != (tc.path != nil) || ok && !slices.Equal(se.Path, tc.path) {
			t.Errorf("%s: got %#v, want a SchemaError at %q", tc.want, err, tc.path)
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
	var se *catalogue.SchemaError
	if want := []string{"properties", "a", "$ref"}; !errors.As(err, &se) || !slices.Equal(se.Path, want) {
		t.Errorf("got %#v, want a SchemaError at %q", err, want)
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
