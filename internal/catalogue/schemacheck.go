package catalogue

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Dialect is the JSON Schema dialect this package generates, and checks a schema against when
// its $schema names none.
const Dialect = "https://json-schema.org/draft/2020-12/schema"

// Bounds of a JSON Schema CheckJSONSchema takes: a tool's parameters run to a few KB, and the
// bounds keep a hostile one from costing more than a moment of a load.
const (
	maxSchemaBytes = 256 << 10
	maxSchemaDepth = 64
)

// schemaURL names the schema being checked; it is never fetched. A $ref that leaves it (to
// another document, or to a file) is refused by offline.
const schemaURL = "mem:///parameters.json"

// offline is the validator's loader: schemas are checked without fetching anything, so a $ref
// to another document is an error, never a request or a file read.
type offline struct{}

func (offline) Load(url string) (any, error) {
	return nil, errors.New("schemas are checked offline")
}

// CheckJSONSchema checks that v, a decoded JSON or YAML value, is a valid JSON Schema (draft
// 2020-12, or the draft its $schema names) whose top-level type, when given, is "object", as a
// tool's parameters are. Nothing is fetched: a $ref must point inside the schema. The error is
// one line saying what is wrong and where, such as `"type": "strnig" is not a JSON Schema type
// (…)`.
func CheckJSONSchema(v any) error {
	budget := maxSchemaBytes
	doc, err := toJSONValue(v, "", 0, &budget)
	if err != nil {
		return err
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return fmt.Errorf("must be a JSON Schema object, got %s", describeJSON(doc))
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(offline{})
	if err := c.AddResource(schemaURL, obj); err != nil {
		return fmt.Errorf("cannot check the schema: %v", err)
	}
	if _, err := c.Compile(schemaURL); err != nil {
		return schemaError(obj, err)
	}
	if t, ok := obj["type"]; ok && t != "object" {
		return fmt.Errorf(`"type": %s must be "object": a tool's parameters are an object of named arguments`, describeJSON(t))
	}
	return nil
}

// toJSONValue copies v, at depth, as the values encoding/json decodes (numbers as json.Number),
// within the size and depth bounds; at is where v is, for messages.
func toJSONValue(v any, at string, depth int, budget *int) (any, error) {
	if depth > maxSchemaDepth {
		return nil, fmt.Errorf("%s: the schema nests deeper than %d levels", quote(at), maxSchemaDepth)
	}
	// Each value costs its text and 8 bytes; a member its key too.
	*budget -= 8
	if s, ok := v.(string); ok {
		*budget -= len(s)
	}
	if *budget < 0 {
		return nil, fmt.Errorf("the schema is larger than %d KiB", maxSchemaBytes>>10)
	}
	switch x := v.(type) {
	case nil, bool, string, json.Number:
		return x, nil
	case int:
		return json.Number(strconv.Itoa(x)), nil
	case int64:
		return json.Number(strconv.FormatInt(x, 10)), nil
	case uint64:
		return json.Number(strconv.FormatUint(x, 10)), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("%s: %v is not a JSON number", quote(at), x)
		}
		return json.Number(strconv.FormatFloat(x, 'g', -1, 64)), nil
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			var err error
			if out[i], err = toJSONValue(item, at+"["+strconv.Itoa(i)+"]", depth+1, budget); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, item := range x {
			*budget -= len(k)
			var err error
			if out[k], err = toJSONValue(item, join(at, k), depth+1, budget); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[any]any:
		return nil, fmt.Errorf("%s: a mapping's keys must be strings", quote(at))
	}
	return nil, fmt.Errorf("%s: %T is not a JSON value", quote(at), v)
}

// quote names a place in the schema for messages: "the schema", or `"properties.a.type"`;
// a deep one by its last 100 bytes.
func quote(at string) string {
	if at == "" {
		return "the schema"
	}
	if len(at) > 100 {
		at = "…" + strings.ToValidUTF8(at[len(at)-100:], "")
	}
	return strconv.Quote(at)
}

// location is the place of JSON pointer tokens at in doc, as quote names it.
func location(doc any, at []string) string {
	path, v := "", doc
	for _, tok := range at {
		if _, ok := v.([]any); ok {
			path += "[" + tok + "]"
		} else {
			path = join(path, tok)
		}
		v = valueAt(v, []string{tok})
	}
	return quote(path)
}

// schemaError turns the validator's error into one line.
func schemaError(doc map[string]any, err error) error {
	var (
		invalid  *jsonschema.SchemaValidationError
		load     *jsonschema.LoadURLError
		notFound *jsonschema.JSONPointerNotFoundError
	)
	switch {
	case errors.As(err, &invalid):
		var ve *jsonschema.ValidationError
		if errors.As(invalid.Err, &ve) {
			return errors.New(leafMessage(doc, deepest(ve)))
		}
	case errors.As(err, &load):
		url := strings.TrimPrefix(load.URL, "mem:///")
		if s, ok := doc["$schema"].(string); ok && strings.TrimSuffix(s, "#") == strings.TrimSuffix(load.URL, "#") {
			return fmt.Errorf(`"$schema": %q is not a JSON Schema draft this service knows (use %q)`, s, Dialect)
		}
		return fmt.Errorf(`$ref %q points outside the schema: schemas are checked offline, so a $ref must point inside it (like "#/$defs/address")`, url)
	case errors.As(err, &notFound):
		return fmt.Errorf("$ref %q points to nothing in the schema", strings.TrimPrefix(notFound.URL, schemaURL))
	}
	msg, _, _ := strings.Cut(strings.ReplaceAll(err.Error(), schemaURL, ""), "\n")
	return errors.New("not a valid JSON Schema: " + msg)
}

// deepest returns the first of the innermost errors at the deepest place in the value: among
// the alternatives the meta-schema offers (a type is a name or a list of names), the one that
// got furthest is the one the author meant.
func deepest(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	best := e
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			if len(best.Causes) > 0 || len(e.InstanceLocation) > len(best.InstanceLocation) {
				best = e
			}
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(e)
	return best
}

// jsonTypes are the names of JSON Schema's types, which the meta-schema's enum lists.
var jsonTypes = []string{"array", "boolean", "integer", "null", "number", "object", "string"}

var english = message.NewPrinter(language.English)

// leafMessage says in words what e, an error of the schema against its meta-schema, finds.
func leafMessage(doc map[string]any, e *jsonschema.ValidationError) string {
	at := location(doc, e.InstanceLocation)
	got := describeJSON(valueAt(doc, e.InstanceLocation))
	switch k := e.ErrorKind.(type) {
	case *kind.Enum:
		if len(k.Want) == len(jsonTypes) && slices.ContainsFunc(k.Want, func(w any) bool { return w == "string" }) {
			return fmt.Sprintf("%s: %s is not a JSON Schema type (expected one of %s)", at, got, strings.Join(jsonTypes, ", "))
		}
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = describeJSON(w)
		}
		return fmt.Sprintf("%s: %s is not one of %s", at, got, strings.Join(want, ", "))
	case *kind.Type:
		if slices.Equal(k.Want, []string{"boolean", "object"}) || slices.Equal(k.Want, []string{"object", "boolean"}) {
			return fmt.Sprintf("%s: %s is not a schema (expected an object, or true or false)", at, got)
		}
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = typeWords[w]
		}
		return fmt.Sprintf("%s: %s must be %s", at, got, strings.Join(want, " or "))
	case *kind.Minimum:
		return fmt.Sprintf("%s: %s must be at least %s", at, got, ratText(k.Want))
	case *kind.Maximum:
		return fmt.Sprintf("%s: %s must be at most %s", at, got, ratText(k.Want))
	case *kind.Format:
		if k.Want == "regex" {
			return fmt.Sprintf("%s: %s is not a valid regular expression (%s)", at, got, strings.TrimPrefix(k.Err.Error(), "error parsing regexp: "))
		}
		return fmt.Sprintf("%s: %s is not a valid %s", at, got, k.Want)
	}
	return fmt.Sprintf("%s: %s", at, e.ErrorKind.LocalizedString(english))
}

var typeWords = map[string]string{
	"array": "a list", "boolean": "true or false", "integer": "an integer", "null": "null",
	"number": "a number", "object": "an object", "string": "a string",
}

func ratText(r *big.Rat) string {
	if r.IsInt() {
		return r.Num().String()
	}
	f, _ := r.Float64()
	return fmtNum(f)
}

// valueAt returns the value at the JSON pointer tokens at in doc.
func valueAt(doc any, at []string) any {
	v := doc
	for _, tok := range at {
		switch x := v.(type) {
		case map[string]any:
			v = x[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// describeJSON names a JSON value for messages, as Describe does.
func describeJSON(v any) string {
	if n, ok := v.(json.Number); ok {
		return n.String()
	}
	return Describe(v)
}
