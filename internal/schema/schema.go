// Package schema declares and checks what a frontend may send as request metadata: the
// `metadata:` sections of rule files, and the bounds every request obeys.
package schema

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/persona-router/persona-router/internal/source"
)

// Generic bounds, applied to every request's metadata, declared or not.
const (
	MaxKeys        = 64
	MaxDepth       = 4
	MaxStringBytes = 1 << 10
)

// maxContext is the longest a request's context may be.
const maxContext = 64

// ValidContext tells whether s may be a request's context: a short identifier, what
// `^[A-Za-z0-9._-]{0,64}$` matches (FuzzValidContext holds the two together). Every request
// checks its context: a loop over the bytes costs a fraction of the regular expression.
func ValidContext(s string) bool {
	if len(s) > maxContext {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// ContextRule says in words what ValidContext accepts.
const ContextRule = "context must be at most 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'"

// Field declares one metadata key.
type Field struct {
	Name string
	// Type is string, number, integer or boolean.
	Type      string
	Enum      []any
	MaxLength *int
	Pattern   *regexp.Regexp
	Min, Max  *float64
	Pos       source.Pos
	// spec is the declaration's canonical text, to tell identical declarations apart from
	// conflicting ones across files.
	spec string
}

// Schema is the merged metadata declaration of a configuration. The zero Schema declares
// nothing: any key is accepted, within the generic bounds.
type Schema struct {
	fields map[string]*Field
}

var (
	types     = []string{"string", "number", "integer", "boolean"}
	fieldKeys = []string{"type", "enum", "maxLength", "pattern", "min", "max"}
)

// Parse reads a `metadata:` section: a mapping of key to declaration.
func Parse(path string, n *yaml.Node) ([]*Field, source.Errors) {
	pairs, errs := source.Mapping(path, n, "metadata", nil)
	var fields []*Field
	for _, p := range pairs {
		f, ferrs := parseField(path, p)
		errs.Add(ferrs...)
		if f != nil {
			fields = append(fields, f)
		}
	}
	return fields, errs
}

func parseField(path string, p source.Field) (*Field, source.Errors) {
	f := &Field{Name: p.Key, Pos: source.At(path, p.KeyN)}
	what := "metadata." + p.Key
	pairs, errs := source.Mapping(path, p.Value, what, fieldKeys)
	var enumNode, maxNode, rangeNode *yaml.Node
	for _, q := range pairs {
		var err *source.Error
		switch q.Key {
		case "type":
			f.Type, err = source.String(path, q.Value, what+".type")
			if err == nil && !slices.Contains(types, f.Type) {
				hint := source.Suggest(f.Type, types)
				for _, t := range types {
					if hint == "" && f.Type != "" && strings.HasPrefix(t, f.Type) {
						hint = ", did you mean " + strconv.Quote(t) + "?"
					}
				}
				err = source.Errorf(source.At(path, q.Value), "%s.type must be one of %s, got %q%s", what, strings.Join(types, ", "), f.Type, hint)
				f.Type = "" // checked no further: what depends on it would only repeat this
			}
		case "enum":
			enumNode = q.Value
		case "maxLength":
			var v int
			if v, err = source.Int(path, q.Value, what+".maxLength"); err == nil && v < 0 {
				err = source.Errorf(source.At(path, q.Value), "%s.maxLength must not be negative", what)
			}
			f.MaxLength = &v
		case "pattern":
			var s string
			if s, err = source.String(path, q.Value, what+".pattern"); err == nil {
				re, cerr := regexp.Compile(s)
				if cerr != nil {
					err = source.Errorf(source.At(path, q.Value), "%s.pattern is not a valid regular expression: %v", what, cerr)
				}
				f.Pattern = re
			}
		case "min", "max":
			var v float64
			if q.Value.ShortTag() != "!!int" && q.Value.ShortTag() != "!!float" || q.Value.Decode(&v) != nil {
				err = source.Errorf(source.At(path, q.Value), "%s.%s must be a number, got %s", what, q.Key, source.Describe(q.Value))
			} else if q.Key == "min" {
				f.Min = &v
			} else {
				f.Max, maxNode = &v, q.Value
			}
			if rangeNode == nil {
				rangeNode = q.KeyN
			}
		}
		if err != nil {
			errs.Add(err)
		}
	}
	if f.Type == "" {
		if !slices.ContainsFunc(pairs, func(q source.Field) bool { return q.Key == "type" }) && !source.Misspelt(p.Value, "type") {
			errs.Addf(f.Pos, "%s has no type (expected one of %s)", what, strings.Join(types, ", "))
		}
		return nil, errs
	}
	if (f.MaxLength != nil || f.Pattern != nil) && f.Type != "string" {
		errs.Addf(f.Pos, "%s: maxLength and pattern apply to strings, not to %s", what, f.Type)
	}
	if (f.Min != nil || f.Max != nil) && f.Type != "number" && f.Type != "integer" {
		errs.Addf(source.At(path, rangeNode), "%s: min and max apply to numbers and integers, not to %s (for a string's length, use maxLength)", what, f.Type)
	}
	if f.Min != nil && f.Max != nil && *f.Min > *f.Max {
		errs.Addf(source.At(path, maxNode), "%s.max (%s) is less than its min (%s): no value could be valid", what, num(*f.Max), num(*f.Min))
	}
	if enumNode != nil {
		items, err := source.Sequence(path, enumNode, what+".enum")
		if err != nil {
			errs.Add(err)
		}
		for _, item := range items {
			var v any
			if item.Kind != yaml.ScalarNode || item.Decode(&v) != nil {
				errs.Addf(source.At(path, item), "%s.enum values must be %s values", what, f.Type)
				continue
			}
			v = normalize(v)
			if msg := f.checkType(v); msg != "" {
				errs.Addf(source.At(path, item), "%s.enum: %v is not %s (the key's type): enum values must be of the key's type", what, describe(v), article(f.Type))
				continue
			}
			f.Enum = append(f.Enum, v)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	f.spec = f.describe()
	return f, nil
}

// article puts "a" or "an" before a type name.
func article(t string) string {
	if strings.ContainsRune("aeiou", rune(t[0])) {
		return "an " + t
	}
	return "a " + t
}

// normalize turns YAML-decoded numbers into the float64 that JSON decoding gives.
func normalize(v any) any {
	switch n := v.(type) {
	case int:
		return float64(n)
	case int64:
		return float64(n)
	case uint64:
		return float64(n)
	}
	return v
}

// New merges the declarations of every file into a schema. A key declared twice must be
// declared identically.
func New(fields []*Field) (*Schema, source.Errors) {
	s := &Schema{fields: make(map[string]*Field, len(fields))}
	var errs source.Errors
	for _, f := range fields {
		prev, ok := s.fields[f.Name]
		switch {
		case !ok:
			s.fields[f.Name] = f
		case prev.spec != f.spec:
			errs.Addf(f.Pos, "metadata.%s is declared differently at %s (%s there, %s here); declare it once or identically", f.Name, prev.Pos, prev.spec, f.spec)
		}
	}
	return s, errs
}

// Declared reports whether the schema declares any key.
func (s *Schema) Declared() bool { return s != nil && len(s.fields) > 0 }

// Fields lists the declared keys, sorted by name.
func (s *Schema) Fields() []*Field {
	if s == nil {
		return nil
	}
	out := make([]*Field, 0, len(s.fields))
	for _, name := range s.names() {
		out = append(out, s.fields[name])
	}
	return out
}

// Validate checks request metadata: the generic bounds always, and when the schema declares
// keys, that every key is declared and every value fits its declaration. The message names
// the key and what was expected.
//
// Valid metadata, the common case on the request path, is checked in one pass that builds no
// message and sorts nothing; only invalid metadata is walked again, in key order, to say what
// is wrong the same way every time.
func (s *Schema) Validate(md map[string]any) error {
	if s.check(md, false) == nil {
		return nil
	}
	return s.check(md, true)
}

// errInvalid is what check returns without explain.
var errInvalid = errors.New("invalid metadata")

// check returns errInvalid for invalid metadata or, with explain, the error that describes the
// first problem in key order.
func (s *Schema) check(md map[string]any, explain bool) error {
	if err := checkBounds(md, explain); err != nil {
		return err
	}
	if !s.Declared() {
		return nil
	}
	if !explain {
		for k, v := range md {
			if s.fieldError(k, v, false) != nil {
				return errInvalid
			}
		}
		return nil
	}
	for _, k := range slices.Sorted(maps.Keys(md)) {
		if err := s.fieldError(k, md[k], true); err != nil {
			return err
		}
	}
	return nil
}

// fieldError checks one top-level key against its declaration.
func (s *Schema) fieldError(k string, v any, explain bool) error {
	f, ok := s.fields[k]
	if ok && v == nil {
		return nil // null is the key left out, and every declared key is optional
	}
	switch {
	case !ok && !explain:
		return errInvalid
	case !ok:
		return &KeyError{Key: k, msg: fmt.Sprintf("metadata.%s is not declared%s (declared: %s)", k, source.Suggest(k, s.names()), strings.Join(s.names(), ", "))}
	}
	if msg := f.check(v); msg != "" {
		if !explain {
			return errInvalid
		}
		return &KeyError{Key: k, msg: fmt.Sprintf("metadata.%s %s", k, msg)}
	}
	return nil
}

// KeyError is metadata refused because of one top-level key.
type KeyError struct {
	Key string
	msg string
}

func (e *KeyError) Error() string { return e.msg }

func (s *Schema) names() []string {
	return slices.Sorted(maps.Keys(s.fields))
}

// checkBounds enforces the generic bounds on metadata.
func checkBounds(md map[string]any, explain bool) error {
	return bounds("metadata", md, explain)
}

// CheckBounds enforces the generic bounds on another object of the request (the user's
// claims), which expressions read as they read metadata; what names it in the error.
func CheckBounds(what string, m map[string]any) error {
	if bounds(what, m, false) == nil {
		return nil
	}
	return bounds(what, m, true)
}

func bounds(what string, m map[string]any, explain bool) error {
	if len(m) > MaxKeys {
		if !explain {
			return errInvalid
		}
		return fmt.Errorf("%s has %d keys, more than %d", what, len(m), MaxKeys)
	}
	return checkNested(what, m, 0, explain)
}

// checkValue checks one value at depth (top-level metadata values are at depth 1); path
// names it in errors and is built only with explain.
func checkValue(path string, v any, depth int, explain bool) error {
	fail := func(format string, args ...any) error {
		if !explain {
			return errInvalid
		}
		return fmt.Errorf(path+" "+format, args...)
	}
	switch v := v.(type) {
	case string:
		if len(v) > MaxStringBytes {
			return fail("is %d bytes long, more than %d", len(v), MaxStringBytes)
		}
	case map[string]any:
		if depth >= MaxDepth {
			return fail("nests deeper than %d levels", MaxDepth)
		}
		if len(v) > MaxKeys {
			return fail("has %d keys, more than %d", len(v), MaxKeys)
		}
		return checkNested(path, v, depth, explain)
	case []any:
		if depth >= MaxDepth {
			return fail("nests deeper than %d levels", MaxDepth)
		}
		if len(v) > MaxKeys {
			return fail("has %d items, more than %d", len(v), MaxKeys)
		}
		for i, item := range v {
			p := ""
			if explain {
				p = path + "[" + strconv.Itoa(i) + "]"
			}
			if err := checkValue(p, item, depth+1, explain); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkNested checks the values of an object at depth.
func checkNested(path string, m map[string]any, depth int, explain bool) error {
	if !explain {
		for _, v := range m {
			if checkValue("", v, depth+1, false) != nil {
				return errInvalid
			}
		}
		return nil
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if err := checkValue(path+"."+k, m[k], depth+1, true); err != nil {
			return err
		}
	}
	return nil
}

// checkType returns what is wrong with v's type, or "".
func (f *Field) checkType(v any) string {
	switch f.Type {
	case "string":
		if _, ok := v.(string); !ok {
			return "must be a string, got " + describe(v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return "must be true or false, got " + describe(v)
		}
	case "number", "integer":
		n, ok := v.(float64)
		if !ok {
			return "must be a number, got " + describe(v)
		}
		if f.Type == "integer" && (n != math.Trunc(n) || math.Abs(n) > 1<<53) {
			return "must be an integer, got " + describe(v)
		}
	}
	return ""
}

// check returns what is wrong with v, or "".
func (f *Field) check(v any) string {
	if msg := f.checkType(v); msg != "" {
		return msg
	}
	if len(f.Enum) > 0 && !slices.Contains(f.Enum, v) {
		return fmt.Sprintf("must be one of %s, got %s", enumText(f.Enum), describe(v))
	}
	switch x := v.(type) {
	case string:
		if f.MaxLength != nil && utf8.RuneCountInString(x) > *f.MaxLength {
			return fmt.Sprintf("must be at most %d characters long, got %d", *f.MaxLength, utf8.RuneCountInString(x))
		}
		if f.Pattern != nil && !f.Pattern.MatchString(x) {
			return fmt.Sprintf("must match %s, got %s", f.Pattern, describe(v))
		}
	case float64:
		if f.Min != nil && x < *f.Min {
			return fmt.Sprintf("must be at least %s, got %s", num(*f.Min), num(x))
		}
		if f.Max != nil && x > *f.Max {
			return fmt.Sprintf("must be at most %s, got %s", num(*f.Max), num(x))
		}
	}
	return ""
}

// describe names a value for messages, quoting and shortening strings.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if len(x) > 40 {
			x = strings.ToValidUTF8(x[:40], "") + "…"
		}
		return strconv.Quote(x)
	case float64:
		return num(x)
	case bool:
		return strconv.FormatBool(x)
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("%T", v)
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func enumText(values []any) string {
	parts := make([]string, len(values))
	for i, v := range values {
		parts[i] = describe(v)
	}
	return strings.Join(parts, ", ")
}

// describe spells the declaration out canonically.
func (f *Field) describe() string {
	parts := []string{"type " + f.Type}
	if len(f.Enum) > 0 {
		parts = append(parts, "enum ["+enumText(f.Enum)+"]")
	}
	if f.MaxLength != nil {
		parts = append(parts, "maxLength "+strconv.Itoa(*f.MaxLength))
	}
	if f.Pattern != nil {
		parts = append(parts, "pattern "+strconv.Quote(f.Pattern.String()))
	}
	if f.Min != nil {
		parts = append(parts, "min "+num(*f.Min))
	}
	if f.Max != nil {
		parts = append(parts, "max "+num(*f.Max))
	}
	return strings.Join(parts, ", ")
}
