package persona

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/persona-router/persona-router/internal/catalogue"
	"github.com/persona-router/persona-router/internal/source"
)

// session-level members of a persona document: everything else is a personaConfig field.
const (
	keyExtends = "extends"
	keySession = "session"
	keyExtra   = "extra"
	keyID      = "personaId"
)

// stateful reports whether a merged document selects a persona saved in Anam Lab.
func stateful(doc *node) bool { return doc != nil && doc.get(keyID) != nil }

// check validates merged, the document a template or rule renders, where own is the document
// that template or rule wrote itself (not inherited). Problems with no position of their own
// are reported at pos, on behalf of who ("persona \"sales\"", "rule \"eu\"").
//
// In stateful mode Anam ignores every personaConfig field but personaId, so a template or rule
// that gives both is a mistake worth reporting; fields inherited into a stateful persona are
// dropped when it is compiled.
func check(own, merged *node, pos source.Pos, who string) source.Errors {
	var errs source.Errors
	if stateful(merged) {
		// One mistake, one error: at the first field set beside personaId, naming them all.
		var set []string
		var at source.Pos
		for _, m := range own.members {
			if m.key != keyID && m.key != keySession && m.key != keyExtends {
				if set = append(set, m.key); len(set) == 1 {
					at = m.node.keyPos
				}
			}
		}
		if len(set) > 0 {
			errs.Addf(at, "%s sets %s, but the persona is stateful (personaId names a persona saved in Anam Lab) and Anam ignores every other persona field then; remove personaId or %s", who, strings.Join(set, ", "), strings.Join(set, ", "))
		}
		if s := merged.get(keySession); s != nil {
			errs.Add(checkTree(s)...)
		}
		return errs
	}
	var missing []string
	for _, f := range catalogue.PersonaConfig.Fields {
		if f.Required && merged.get(f.Name) == nil {
			missing = append(missing, f.Name)
		}
	}
	if len(missing) > 0 {
		errs.Addf(pos, "%s has no %s (required, set here or inherited through extends, unless personaId is set)", who, strings.Join(missing, ", "))
	}
	for _, m := range merged.members {
		errs.Add(checkTree(m.node)...)
	}
	return errs
}

// checkTree checks what can only be checked once a document is merged: which members an
// object has (required, one-of, together, members that belong to a tool's type), unique tool
// names and tool parameters.
func checkTree(n *node) source.Errors {
	var errs source.Errors
	f := n.field
	switch {
	case n.kind == object && f.Kind == catalogue.Object:
		for _, p := range f.CheckObject(n, n.keys()) {
			at, path := n.pos, describePath(n.path, f)
			if m := n.get(p.At); m != nil {
				at, path = m.keyPos, m.path
			}
			// A missing member is reported at its object.
			errs.Addf(at, "%s: %s", path, p.Msg)
		}
		for _, m := range n.members {
			errs.Add(checkTree(m.node)...)
		}
	case n.kind == object && f.Kind == catalogue.Schema:
		if !n.schemaChecked {
			n.schemaChecked, n.schemaErr = true, catalogue.CheckJSONSchema(value(n))
		}
		if err := n.schemaErr; err != nil {
			errs.Addf(schemaPos(n, err), "%s is not a valid JSON Schema: %v", n.path, err)
		}
		errs.Add(keywordTypos(n)...)
	case n.kind == object:
		for _, m := range n.members {
			errs.Add(checkTree(m.node)...)
		}
	case n.kind == list:
		if f.MinLen > 0 && len(n.items) < f.MinLen {
			errs.Addf(n.pos, "%s must not be empty", n.path)
		}
		seen := make(map[string]*node)
		for _, item := range n.items {
			errs.Add(checkTree(item)...)
			if f.UniqueBy == "" || item.kind != object {
				continue
			}
			key, ok := item.Str(f.UniqueBy)
			if !ok {
				continue
			}
			if prev, dup := seen[key]; dup {
				errs.Addf(item.get(f.UniqueBy).pos, "%s.%s: %q is already the %s of %s (%s names must be unique within a persona)", item.path, f.UniqueBy, key, f.UniqueBy, prev.path, f.Items.Name)
				continue
			}
			seen[key] = item
		}
	}
	return errs
}

// value returns a document's value as decoded JSON would hold it; text with placeholders is
// its source.
func value(n *node) any {
	switch n.kind {
	case literal:
		return n.lit
	case text:
		return n.text.Source
	case object:
		m := make(map[string]any, len(n.members))
		for _, mem := range n.members {
			m[mem.key] = value(mem.node)
		}
		return m
	case list:
		l := make([]any, len(n.items))
		for i, item := range n.items {
			l[i] = value(item)
		}
		return l
	}
	return nil
}

// dedupe drops repeated errors: a parent's problem is found again in each child that
// inherits it.
func dedupe(errs source.Errors) source.Errors {
	seen := make(map[string]bool, len(errs))
	out := errs[:0]
	for _, e := range errs {
		key := fmt.Sprint(e.Pos, "\x00", e.Msg)
		if !seen[key] {
			seen[key] = true
			out = append(out, e)
		}
	}
	return out
}

// schemaPos is where in the document the JSON Schema n goes wrong: the value the validator's
// path leads to (its key, for a value that is a key's), else n itself.
func schemaPos(n *node, err error) source.Pos {
	var se *catalogue.SchemaError
	if !errors.As(err, &se) {
		return n.pos
	}
	at := n.pos
	cur := n
	for _, step := range se.Path {
		var next *node
		switch cur.kind {
		case object:
			next = cur.get(step)
		case list:
			if i, err := strconv.Atoi(step); err == nil && i >= 0 && i < len(cur.items) {
				next = cur.items[i]
			}
		}
		if next == nil {
			break
		}
		cur, at = next, next.pos
		if next.keyPos.Line > 0 && next.kind == object {
			at = next.keyPos
		}
	}
	return at
}

// schemaKeywords are the keywords of JSON Schema (draft 2020-12 and the earlier drafts' names).
var schemaKeywords = []string{
	"$schema", "$id", "$ref", "$defs", "$anchor", "$comment", "$dynamicRef", "$dynamicAnchor", "$vocabulary",
	"type", "enum", "const", "title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly",
	"properties", "patternProperties", "additionalProperties", "required", "propertyNames", "minProperties", "maxProperties",
	"dependentRequired", "dependentSchemas", "dependencies", "unevaluatedProperties",
	"items", "prefixItems", "additionalItems", "contains", "minContains", "maxContains", "minItems", "maxItems", "uniqueItems", "unevaluatedItems",
	"minLength", "maxLength", "pattern", "format", "contentMediaType", "contentEncoding", "contentSchema",
	"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
	"allOf", "anyOf", "oneOf", "not", "if", "then", "else", "definitions",
}

// Keywords whose value maps names to schemas, or lists schemas, or is one schema.
var (
	schemaMaps  = []string{"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
	schemaLists = []string{"allOf", "anyOf", "oneOf", "prefixItems"}
	schemaOne   = []string{"items", "additionalProperties", "additionalItems", "contains", "propertyNames", "not", "if", "then", "else", "unevaluatedProperties", "unevaluatedItems", "contentSchema"}
)

// keywordTypos reports, in a tool's parameters, keys in a schema's place that are typos of
// JSON Schema keywords (requierd for required): a validator ignores keywords it does not know,
// so the typo would otherwise go live silently. Keys close to no keyword are the author's own
// annotations, and pass.
func keywordTypos(n *node) source.Errors {
	var errs source.Errors
	var walk func(s *node)
	walk = func(s *node) {
		if s == nil || s.kind != object {
			return
		}
		for _, m := range s.members {
			k := m.key
			switch {
			case slices.Contains(schemaMaps, k):
				if m.node.kind == object {
					for _, sub := range m.node.members {
						walk(sub.node)
					}
				}
			case slices.Contains(schemaLists, k):
				for _, item := range m.node.items {
					walk(item)
				}
			case slices.Contains(schemaOne, k):
				walk(m.node)
			case !slices.Contains(schemaKeywords, k):
				if hint := source.Suggest(k, schemaKeywords); hint != "" {
					errs.Addf(m.node.keyPos, "%s: %q is not a JSON Schema keyword%s (a validator would ignore it)", m.node.path, k, hint)
				}
			}
		}
	}
	walk(n)
	return errs
}
