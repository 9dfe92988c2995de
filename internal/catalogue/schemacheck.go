package catalogue

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/big"
	neturl "net/url"
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

// SchemaError is a problem at a place inside a JSON Schema, as CheckJSONSchema reports it.
type SchemaError struct {
	// Path is the keys (and, for lists, the decimal indexes) from the schema's root to the
	// value at fault; empty for the root. For a bad key (a patternProperties regular
	// expression) it ends with the key, naming its member. Keys are as written, not escaped
	// as in a JSON pointer.
	Path []string
	// Msg is the whole one-line message, which names the place itself.
	Msg string
}

// Error returns Msg.
func (e *SchemaError) Error() string { return e.Msg }

// CheckJSONSchema checks that v, a decoded JSON or YAML value, is a valid JSON Schema (draft
// 2020-12, or the draft its $schema names) whose top-level type, when given, is "object", as a
// tool's parameters are. Nothing is fetched: a $ref must point inside the schema. The error is
// one line saying what is wrong and where, such as `"type": "strnig" is not a JSON Schema type
// (…)`; for a problem at a place in the schema it is a *SchemaError, whose Path names the
// place. (A schema over the size bound is refused with a plain error.)
func CheckJSONSchema(v any) error {
	budget := maxSchemaBytes
	doc, err := toJSONValue(v, make([]string, 0, 16), 0, &budget)
	if err != nil {
		var bad *badValue
		if errors.As(err, &bad) {
			return &SchemaError{Path: bad.at, Msg: location(v, bad.at) + ": " + bad.msg}
		}
		return err
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return &SchemaError{Msg: fmt.Sprintf("must be a JSON Schema object, got %s", describeJSON(doc))}
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
		return &SchemaError{
			Path: []string{"type"},
			Msg:  fmt.Sprintf(`"type": %s must be "object": a tool's parameters are an object of named arguments`, describeJSON(t)),
		}
	}
	return nil
}

// badValue is a value toJSONValue refuses, at the JSON pointer tokens at.
type badValue struct {
	at  []string
	msg string
}

func (e *badValue) Error() string { return e.msg }

// toJSONValue copies v, at depth, as the values encoding/json decodes (numbers as json.Number),
// within the size and depth bounds; at is where v is, as JSON pointer tokens. A value refused
// where it is is a *badValue; the size bound is not anywhere.
func toJSONValue(v any, at []string, depth int, budget *int) (any, error) {
	bad := func(format string, args ...any) error {
		return &badValue{at: slices.Clone(at), msg: fmt.Sprintf(format, args...)}
	}
	if depth > maxSchemaDepth {
		return nil, bad("the schema nests deeper than %d levels", maxSchemaDepth)
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
			return nil, bad("%v is not a JSON number", x)
		}
		return json.Number(strconv.FormatFloat(x, 'g', -1, 64)), nil
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			var err error
			if out[i], err = toJSONValue(item, append(at, strconv.Itoa(i)), depth+1, budget); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, item := range x {
			*budget -= len(k)
			var err error
			if out[k], err = toJSONValue(item, append(at, k), depth+1, budget); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[any]any:
		return nil, bad("a mapping's keys must be strings")
	}
	return nil, bad("%T is not a JSON value", v)
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

// schemaError turns the validator's error into one line, a *SchemaError where the place of
// the problem is known.
func schemaError(doc map[string]any, err error) error {
	var (
		invalid   *jsonschema.SchemaValidationError
		load      *jsonschema.LoadURLError
		notFound  *jsonschema.JSONPointerNotFoundError
		noAnchor  *jsonschema.AnchorNotFoundError
		dupID     *jsonschema.DuplicateIDError
		dupAnchor *jsonschema.DuplicateAnchorError
	)
	switch {
	case errors.As(err, &invalid):
		var ve *jsonschema.ValidationError
		if errors.As(invalid.Err, &ve) {
			f := deepest(ve)
			return &SchemaError{Path: f.at, Msg: leafMessage(doc, f)}
		}
	case errors.As(err, &load):
		if at, s := findURL(doc, []string{"$schema"}, load.URL); at != nil {
			return &SchemaError{Path: at, Msg: fmt.Sprintf(`%s: %q is not a JSON Schema draft this service knows (use %q)`, location(doc, at), s, Dialect)}
		}
		kw, ref := "$ref", strings.TrimPrefix(load.URL, "mem:///")
		at, written := findURL(doc, refKeywords, load.URL)
		if at != nil {
			kw, ref = at[len(at)-1], written
		}
		return located(at, fmt.Sprintf(`%s %q points outside the schema: schemas are checked offline, so a $ref must point inside it (like "#/$defs/address")`, kw, ref))
	case errors.As(err, &notFound):
		return pointsToNothing(doc, notFound.URL)
	case errors.As(err, &noAnchor):
		return pointsToNothing(doc, noAnchor.Reference)
	case errors.As(err, &dupID):
		return duplicate(doc, "$id", dupID.ID, dupID.Ptr1, dupID.Ptr2)
	case errors.As(err, &dupAnchor):
		return duplicate(doc, "$anchor", dupAnchor.Anchor, dupAnchor.Ptr1, dupAnchor.Ptr2)
	}
	msg, _, _ := strings.Cut(strings.ReplaceAll(err.Error(), schemaURL, ""), "\n")
	return errors.New("not a valid JSON Schema: " + msg)
}

// located is msg as a *SchemaError at at, or as a plain error when at is nil (not found).
func located(at []string, msg string) error {
	if at == nil {
		return errors.New(msg)
	}
	return &SchemaError{Path: at, Msg: msg}
}

// refKeywords are the keywords of the drafts that refer to a schema by URL.
var refKeywords = []string{"$ref", "$dynamicRef", "$recursiveRef"}

// pointsToNothing is the error of a $ref to url, inside the schema, that finds nothing there.
func pointsToNothing(doc map[string]any, url string) error {
	kw, ref := "$ref", strings.TrimPrefix(url, schemaURL)
	at, written := findURL(doc, refKeywords, url)
	if at != nil {
		kw, ref = at[len(at)-1], written
	}
	return located(at, fmt.Sprintf("%s %q points to nothing in the schema", kw, ref))
}

// duplicate is the error of two schemas, at the JSON pointers ptr1 and ptr2, whose keyword
// (an $id or an $anchor) gives the same name; it is the later one's.
func duplicate(doc map[string]any, keyword, name, ptr1, ptr2 string) error {
	first, second := pointerTokens(ptr1), pointerTokens(ptr2)
	if slices.Compare(first, second) > 0 {
		first, second = second, first
	}
	at := append(second, keyword)
	return &SchemaError{Path: at, Msg: fmt.Sprintf("%s: %s %q is already the %s of %s", location(doc, at), keyword, name, keyword, location(doc, first))}
}

// pointerTokens splits a JSON pointer ("/a/b~1c") into its tokens.
func pointerTokens(ptr string) []string {
	if ptr == "" {
		return []string{}
	}
	toks := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	for i, t := range toks {
		toks[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(t)
	}
	return toks
}

// findURL finds where in doc one of keywords ($schema, or those of refKeywords) gives url, as
// the validator resolved it (against the $id of the schemas around it): its JSON pointer
// tokens, ending with the keyword, and the value as written. A reference matches url by its
// document when url has no fragment. The schemas are searched before the values of keywords
// that hold none (which a $ref may still point into). The tokens are nil when nothing
// matches.
func findURL(doc map[string]any, keywords []string, url string) ([]string, string) {
	base, _ := neturl.Parse(schemaURL)
	wantDoc, wantFrag, hasFrag := strings.Cut(url, "#")
	wantFrag = unescapeFragment(wantFrag)
	matches := func(keyword, s string, base *neturl.URL) bool {
		if keyword == "$schema" {
			return strings.TrimSuffix(s, "#") == strings.TrimSuffix(url, "#")
		}
		refDoc, refFrag, _ := strings.Cut(s, "#")
		r, err := neturl.Parse(refDoc)
		if err != nil {
			return false
		}
		return base.ResolveReference(r).String() == wantDoc && (!hasFrag || unescapeFragment(refFrag) == wantFrag)
	}
	var found []string
	var value string
	visit := func(obj map[string]any, base *neturl.URL, at []string) bool {
		for _, kw := range keywords {
			if s, ok := obj[kw].(string); ok && matches(kw, s, base) {
				found, value = append(slices.Clone(at), kw), s
				return false
			}
		}
		return true
	}
	for _, schemasOnly := range []bool{true, false} {
		if walkSchemas(doc, base, make([]string, 0, 16), schemasOnly, visit); found != nil {
			break
		}
	}
	return found, value
}

func unescapeFragment(f string) string {
	if u, err := neturl.PathUnescape(f); err == nil {
		return u
	}
	return f
}

// Keywords whose value is a schema, a list of schemas, or an object of schemas, in any draft.
var (
	schemaKeywords = []string{"additionalItems", "additionalProperties", "contains", "contentSchema", "else", "if", "not", "propertyNames", "then", "unevaluatedItems", "unevaluatedProperties"}
	listKeywords   = []string{"allOf", "anyOf", "items", "oneOf", "prefixItems"}
	objectKeywords = []string{"$defs", "definitions", "dependencies", "dependentSchemas", "patternProperties", "properties"}
)

// walkSchemas calls visit for every object of v, at the JSON pointer tokens at, in the order
// of its keys, with base the URL it is resolved against, until visit returns false; when
// schemasOnly, only for the schemas in it (not the values of enum, const, default, examples
// or of keywords it does not know). It returns false when visit did.
func walkSchemas(v any, base *neturl.URL, at []string, schemasOnly bool, visit func(map[string]any, *neturl.URL, []string) bool) bool {
	switch x := v.(type) {
	case []any:
		if schemasOnly {
			return true
		}
		for i, item := range x {
			if !walkSchemas(item, base, append(at, strconv.Itoa(i)), schemasOnly, visit) {
				return false
			}
		}
		return true
	case map[string]any:
		if id, ok := x["$id"].(string); ok {
			if u, err := neturl.Parse(id); err == nil {
				base = base.ResolveReference(u)
			}
		}
		if !visit(x, base, at) {
			return false
		}
		for _, k := range slices.Sorted(maps.Keys(x)) {
			item, at := x[k], append(at, k)
			switch {
			case !schemasOnly:
				if !walkSchemas(item, base, at, false, visit) {
					return false
				}
			case slices.Contains(schemaKeywords, k):
				if !walkSchemas(item, base, at, true, visit) {
					return false
				}
			case slices.Contains(listKeywords, k):
				items, ok := item.([]any)
				if !ok {
					items = []any{item}
				}
				for i, s := range items {
					at := at
					if ok {
						at = append(at, strconv.Itoa(i))
					}
					if !walkSchemas(s, base, at, true, visit) {
						return false
					}
				}
			case slices.Contains(objectKeywords, k):
				if m, ok := item.(map[string]any); ok {
					for _, name := range slices.Sorted(maps.Keys(m)) {
						if !walkSchemas(m[name], base, append(at, name), true, visit) {
							return false
						}
					}
				}
			}
		}
	}
	return true
}

// fault is an error of the schema against its meta-schema, and the place it finds at fault.
type fault struct {
	e  *jsonschema.ValidationError
	at []string
	// key is the value at fault when it is the last key of at (a patternProperties regular
	// expression), not the value there.
	key *string
}

// deepest returns the first of the innermost errors at the deepest place in the value: among
// the alternatives the meta-schema offers (a type is a name or a list of names), the one that
// got furthest is the one the author meant.
func deepest(e *jsonschema.ValidationError) fault {
	best := fault{e: e, at: e.InstanceLocation}
	var walk func(e *jsonschema.ValidationError, parent []string, key *string)
	walk = func(e *jsonschema.ValidationError, parent []string, key *string) {
		at := e.InstanceLocation
		if pn, ok := e.ErrorKind.(*kind.PropertyNames); ok {
			at, key = keyPlace(e, parent, pn.Property), &pn.Property
		} else if key != nil {
			// The errors below propertyNames are of the key, a value of its own.
			at = parent
		}
		if len(e.Causes) == 0 {
			if len(best.e.Causes) > 0 || len(at) > len(best.at) {
				best = fault{e, at, key}
			}
			return
		}
		for _, c := range e.Causes {
			walk(c, at, key)
		}
	}
	walk(e, nil, nil)
	if u, ok := best.e.ErrorKind.(*kind.UniqueItems); ok && best.key == nil {
		// The later of two equal items is the one at fault.
		best.at = append(slices.Clone(best.at), strconv.Itoa(u.Duplicates[1]))
	}
	return best
}

// keyPlace is the place of the member whose key, property, fails e, a propertyNames error
// below an error at parent. The validator's InstanceLocation of a propertyNames error shares
// memory it writes over later, so only its length, that of the object holding the key, is
// trusted: the object is parent, or the member of parent the meta-schema's propertyNames
// belongs to (".../properties/patternProperties/propertyNames").
func keyPlace(e *jsonschema.ValidationError, parent []string, property string) []string {
	obj := slices.Clone(parent)
	if len(e.InstanceLocation) == len(parent)+1 {
		_, ptr, _ := strings.Cut(e.SchemaURL, "#")
		toks := pointerTokens(ptr)
		if n := len(toks); n >= 3 && toks[n-1] == "propertyNames" && toks[n-3] == "properties" {
			obj = append(obj, toks[n-2])
		}
	}
	return append(obj, property)
}

// jsonTypes are the names of JSON Schema's types, which the meta-schema's enum lists.
var jsonTypes = []string{"array", "boolean", "integer", "null", "number", "object", "string"}

var english = message.NewPrinter(language.English)

// leafMessage says in words what f, an error of the schema against its meta-schema, finds.
func leafMessage(doc map[string]any, f fault) string {
	e := f.e
	at := location(doc, f.at)
	got := describeJSON(valueAt(doc, f.at))
	if f.key != nil {
		got = describeJSON(*f.key)
	}
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
	case *kind.UniqueItems:
		return fmt.Sprintf("%s: %s is already in the list, at [%d]", at, got, k.Duplicates[0])
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
