package catalogue

import (
	"reflect"
	"slices"
	"strings"
)

// The JSON Schemas of persona files and of a rule's `set`, for editors: they flag a typo, a
// wrong type or a value out of range as it is typed, and show each field's Doc on hover. They
// are derived from the catalogue like the load checks, so the two cannot drift; the load stays
// the authority (it also compiles placeholders and applies inheritance, which a schema cannot).
//
// They name draft 2020-12 but use only what draft-07 reads alike, as some editors (VS Code's
// YAML extension) validate with draft-07 whatever $schema says: no keyword of a later draft
// (dependentRequired is written as if/then), no $ref beside other keywords, no list of items.
// Their $defs is reached by JSON pointer ("#/$defs/placeholder"), which draft-07 resolves too.

// The schemas' $id: the files `persona-router schema` writes are conventionally named so.
const (
	PersonaSchemaID = "https://github.com/persona-router/persona-router/persona.schema.json"
	SetSchemaID     = "https://github.com/persona-router/persona-router/set.schema.json"
)

const (
	// placeholderPattern matches a string with a {{ placeholder }} anywhere: a string field
	// takes it whatever its pattern, format or values, as it is checked once rendered.
	placeholderPattern = `\{\{[\s\S]*\}\}`
	// expressionPattern matches a string that is exactly one placeholder, which keeps its
	// expression's type: a placeholder ends at the first "}}", so the inside holds none.
	expressionPattern = `^\{\{(?:[^}]|\}[^}])*\}\}$`
)

// placeholderDefs are the $defs the written views refer to.
func placeholderDefs() map[string]any {
	return map[string]any{
		"placeholder": map[string]any{
			"type":        "string",
			"pattern":     placeholderPattern,
			"description": "Text with {{ expression }} placeholders, rendered for each request and checked then.",
		},
		"expression": map[string]any{
			"type":        "string",
			"pattern":     expressionPattern,
			"description": "Exactly one {{ expression }} placeholder: the field takes the expression's value, of its type, for each request.",
		},
	}
}

// PersonaFileSchema returns the JSON Schema of a persona file (personas/<id>.yaml).
//
// Every field takes a placeholder where it takes a typed value, except the literal ones (a
// tool's type and subtype, extends): a string field any text with a placeholder, any other
// field a string that is exactly one placeholder. Every member of an object takes null, which
// removes an inherited value. The fields Anam requires are not required here, as a persona may
// inherit them through extends; a tool's are. In a persona that extends another, an object's
// one-of and together groups may be completed by what it inherits, so only giving two members
// of a one-of group is refused there.
func PersonaFileSchema() map[string]any {
	s := root(PersonaFile, view{merged: true})
	// Without extends nothing is inherited: the groups must hold within the file.
	strict := make(map[string]any)
	for _, m := range PersonaFile.Fields {
		if b := (view{}).schema(m, PersonaFile, true); !reflect.DeepEqual(b, (view{merged: true}).schema(m, PersonaFile, true)) {
			strict[m.Name] = b
		}
	}
	if len(strict) > 0 {
		s["allOf"] = append(s["allOf"].([]any), map[string]any{
			"if": map[string]any{
				"required":   []string{"extends"},
				"properties": map[string]any{"extends": map[string]any{"type": "string"}},
			},
			"else": map[string]any{"properties": strict},
		})
	}
	s["$id"] = PersonaSchemaID
	s["title"] = "persona-router persona"
	s["description"] = "A persona template of persona-router (personas/<id>.yaml): the fields of Anam's personaConfig, and extends, session and extra."
	return s
}

// SetSchema returns the JSON Schema of a rule's `set`: a persona file's fields but extends,
// written over the rule's persona, with the placeholders and nulls of PersonaFileSchema.
func SetSchema() map[string]any {
	s := root(Set, view{merged: true})
	s["$id"] = SetSchemaID
	s["title"] = "persona-router rule set"
	s["description"] = Set.Doc
	return s
}

// PartialSchema returns the JSON Schema of a partial view of a rendered value of f, as a rule
// test expects it: any subset of an object's members (nested objects partial too), values as
// rendered (no placeholders), and null or a member's zero value ("", 0) standing for a member
// left out.
func PartialSchema(f *Field) map[string]any {
	return view{rendered: true}.schema(f, nil, false)
}

// root is the schema of a persona file or a set, f, with its $defs.
func root(f *Field, v view) map[string]any {
	s := v.object(f, true)
	// A persona in stateful mode is sent alone: the personaConfig fields beside it are errors,
	// unless null (removing an inherited one).
	alone := PersonaConfig.Alone
	others := make(map[string]any)
	for _, m := range f.Fields {
		if m.Name != alone && PersonaConfig.Member(m.Name) != nil {
			others[m.Name] = map[string]any{"type": "null"}
		}
	}
	s["allOf"] = append(s["allOf"].([]any), map[string]any{
		"if":   present(alone),
		"then": map[string]any{"properties": others},
	})
	s["$schema"] = Dialect
	s["$defs"] = placeholderDefs()
	return s
}

// view is how the values a schema describes are written.
type view struct {
	// rendered values are what a persona renders to, as a rule test expects them: a partial
	// view (nothing required), without placeholders, where a member left out compares as
	// null or its zero value.
	rendered bool
	// merged values are written over inherited ones (a rule's set, a persona that extends
	// another): what they inherit may complete an object's one-of and together groups.
	merged bool
}

// schema is the schema of a value of f, a member of parent (nil for a list's item or the value
// itself). nullable adds null: it removes an inherited member, or stands for one left out.
func (v view) schema(f *Field, parent *Field, nullable bool) map[string]any {
	typed := v.typed(f, parent)
	var alts []any
	switch {
	case v.rendered || f.Literal || f.Kind == Any:
	case f.Kind == String:
		alts = append(alts, ref("placeholder"))
	default:
		alts = append(alts, ref("expression"))
	}
	if z, ok := f.zero(); ok && v.rendered {
		alts = append(alts, map[string]any{"const": z})
	}
	if v.rendered && f.Kind == String {
		alts = append(alts, matcherSchema)
	}
	if nullable && f.Kind != Any {
		alts = append(alts, map[string]any{"type": "null"})
	}
	out := typed
	if len(alts) > 0 {
		out = map[string]any{"anyOf": append([]any{typed}, alts...)}
	}
	if d := f.description(); d != "" {
		out["description"] = d
	}
	return out
}

// matcherSchema is a rule test's matcher of a rendered string: {contains: …}, {notContains: …}
// or {matches: regex}.
var matcherSchema = map[string]any{
	"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": false,
	"description": "Matches a rendered string: contains, notContains or matches (a regular expression).",
	"properties": map[string]any{
		"contains":    map[string]any{"type": "string"},
		"notContains": map[string]any{"type": "string"},
		"matches":     map[string]any{"type": "string", "format": "regex"},
	},
}

func ref(def string) map[string]any { return map[string]any{"$ref": "#/$defs/" + def} }

// zero is the zero value a rule test may expect for a member f left out ("an absent field
// compares as "", 0 or false"), when f's own checks refuse it.
func (f *Field) zero() (any, bool) {
	switch f.Kind {
	case String:
		if f.Values != nil || f.Pattern != nil || f.Format != Text || f.MinLen > 0 {
			return "", true
		}
	case Integer, Number:
		if (f.Min != nil && *f.Min > 0) || (f.Max != nil && *f.Max < 0) {
			return 0, true
		}
	}
	return nil, false
}

func (f *Field) description() string {
	d := f.Doc
	if f.Default != "" {
		d += " Default: " + f.Default + "."
	}
	return strings.TrimSpace(d)
}

// typed is the schema of a value of f written as a plain value.
func (v view) typed(f *Field, parent *Field) map[string]any {
	switch f.Kind {
	case String:
		return f.stringSchema()
	case Integer, Number:
		s := map[string]any{"type": "number"}
		if f.Kind == Integer {
			s["type"] = "integer"
		}
		if f.Min != nil {
			s["minimum"] = *f.Min
		}
		if f.Max != nil {
			s["maximum"] = *f.Max
		}
		return s
	case Boolean:
		return map[string]any{"type": "boolean"}
	case Object:
		return v.object(f, false)
	case List:
		// A list is replaced whole, never merged: its items hold their groups themselves.
		items := view{rendered: v.rendered}
		s := map[string]any{"type": "array", "items": items.schema(f.Items, nil, false)}
		if f.MinLen > 0 {
			s["minItems"] = f.MinLen
		}
		if f.MaxLen > 0 {
			s["maxItems"] = f.MaxLen
		}
		return s
	case Map:
		s := map[string]any{"type": "object", "additionalProperties": v.schema(f.Items, nil, true)}
		if f.Name == "extra" && !v.rendered {
			// A field the catalogue knows is given as itself, not through extra.
			known := PersonaConfig.Names()
			if parent == Session {
				known = Request.Names()
			}
			s["propertyNames"] = map[string]any{"not": map[string]any{"enum": known}}
		}
		if f.KeyPattern != nil {
			s["propertyNames"] = map[string]any{"pattern": f.KeyPattern.String()}
		}
		return s
	case Schema:
		// Checked as a JSON Schema when the configuration loads.
		return map[string]any{"type": "object"}
	}
	return map[string]any{}
}

// uuidPattern is the canonical 36-character form IsUUID accepts.
const uuidPattern = `[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}`

// urlPattern approximates checkURL: https:// with a host, or http:// to localhost or a
// loopback address.
const urlPattern = `^(?:https://[^/?#\s]+|http://(?:localhost|127(?:\.[0-9]{1,3}){3}|\[::1\])(?::[0-9]+)?)(?:[/?#]\S*)?$`

func (f *Field) stringSchema() map[string]any {
	s := map[string]any{"type": "string"}
	if f.MinLen > 0 {
		s["minLength"] = f.MinLen
	}
	if f.MaxLen > 0 {
		s["maxLength"] = f.MaxLen
	}
	if f.Values != nil {
		s["enum"] = f.Values
	}
	if f.Literal {
		// The load refuses any "{{" in a field written literally.
		s["not"] = map[string]any{"pattern": `\{\{`}
	}
	var patterns []string
	if f.Pattern != nil {
		patterns = append(patterns, f.Pattern.String())
	}
	switch f.Format {
	case UUID:
		s["format"] = "uuid"
		patterns = append(patterns, "^"+uuidPattern+"$")
	case LLM:
		// Empty, a UUID or a brain-type constant, as checkString takes.
		brain := strings.TrimSuffix(strings.TrimPrefix(brainType.String(), "^"), "$")
		patterns = append(patterns, "^(?:"+uuidPattern+"|"+brain+")?$")
	case URL:
		s["format"] = "uri"
		patterns = append(patterns, urlPattern)
	}
	switch len(patterns) {
	case 0:
	case 1:
		s["pattern"] = patterns[0]
	default:
		all := make([]any, len(patterns))
		for i, p := range patterns {
			all[i] = map[string]any{"pattern": p}
		}
		s["allOf"] = all
	}
	return s
}

// present is a schema that holds when member name is given, and not as null.
func present(name string) map[string]any {
	return map[string]any{
		"required":   []string{name},
		"properties": map[string]any{name: map[string]any{"not": map[string]any{"type": "null"}}},
	}
}

// object is the schema of an object of f; a root's required members may be inherited.
func (v view) object(f *Field, isRoot bool) map[string]any {
	props := make(map[string]any, len(f.Fields))
	var required []string
	for _, m := range f.Fields {
		props[m.Name] = v.schema(m, f, true)
		if m.Required && m.Only == nil {
			required = append(required, m.Name)
		}
	}
	s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 && !isRoot && !v.rendered {
		s["required"] = required
	}
	all := []any{}
	if len(f.OneOf) > 1 && !v.rendered {
		all = append(all, v.oneOf(f.OneOf))
	}
	if len(f.Together) > 1 && !v.rendered && !v.merged {
		// Each member given (even as null) requires the others: dependentRequired, written
		// as if/then, which draft-07 validators (editors') enforce too.
		for _, name := range f.Together {
			var others []string
			for _, o := range f.Together {
				if o != name {
					others = append(others, o)
				}
			}
			all = append(all, map[string]any{
				"if":   map[string]any{"required": []string{name}},
				"then": map[string]any{"required": others},
			})
		}
	}
	for _, c := range conditions(f) {
		all = append(all, v.condition(f, c))
	}
	if len(all) > 0 || isRoot {
		s["allOf"] = all
	}
	return s
}

// oneOf is the schema of a one-of group: exactly one member given (not as null), or, merged
// over inherited values, never two.
func (v view) oneOf(names []string) map[string]any {
	if !v.merged {
		alts := make([]any, len(names))
		for i, name := range names {
			alts[i] = present(name)
		}
		return map[string]any{"oneOf": alts}
	}
	var pairs []any
	for i, a := range names {
		for _, b := range names[i+1:] {
			pairs = append(pairs, map[string]any{"allOf": []any{present(a), present(b)}})
		}
	}
	return map[string]any{"not": map[string]any{"anyOf": pairs}}
}

// conditions lists the distinct conditions of f's members, in order.
func conditions(f *Field) []*Cond {
	var out []*Cond
	for _, m := range f.Fields {
		if m.Only != nil && !slices.Contains(out, m.Only) {
			out = append(out, m.Only)
		}
	}
	return out
}

// condition is the schema of the members of f that exist only under c: required (if they are)
// when c holds, refused when it does not. A rendered partial view may leave c's key out, so
// there they are refused only when what is given rules c out.
func (v view) condition(f *Field, c *Cond) map[string]any {
	forbid := make(map[string]any)
	var required []string
	for _, m := range f.Fields {
		if m.Only == c {
			forbid[m.Name] = false
			if m.Required {
				required = append(required, m.Name)
			}
		}
	}
	if v.rendered {
		return map[string]any{"if": f.refuted(c), "then": map[string]any{"properties": forbid}}
	}
	s := map[string]any{
		"if": map[string]any{
			"required":   []string{c.Key},
			"properties": map[string]any{c.Key: map[string]any{"enum": c.Values}},
		},
		"else": map[string]any{"properties": forbid},
	}
	if len(required) > 0 {
		s["then"] = map[string]any{"required": required}
	}
	return s
}

// refuted is a schema that holds when an object of f rules condition c out, even partially
// given: c's key has another value, or c's key is itself ruled out (a client tool has no
// subtype, so no webhook url).
func (f *Field) refuted(c *Cond) map[string]any {
	alts := []any{map[string]any{
		"required":   []string{c.Key},
		"properties": map[string]any{c.Key: map[string]any{"not": map[string]any{"enum": c.Values}}},
	}}
	if k := f.Member(c.Key); k != nil && k.Only != nil && k.Only != c {
		alts = append(alts, f.refuted(k.Only))
	}
	return map[string]any{"anyOf": alts}
}
