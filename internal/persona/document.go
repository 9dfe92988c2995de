package persona

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/expr-lang/expr/ast"
	exprparser "github.com/expr-lang/expr/parser"
	"gopkg.in/yaml.v3"

	"github.com/persona-router/persona-router/internal/catalogue"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/source"
)

// A persona document is the tree of a persona file or of a rule's `set`, read against the
// catalogue: every value knows the catalogue field it is, where it was written, and whether it
// is a literal or holds placeholders. Documents are merged (extends, set), checked as a whole,
// then compiled into a Program that renders them.

type nodeKind uint8

const (
	// literal is a string, number or boolean written as is (or a placeholder evaluated at load).
	literal nodeKind = iota
	// text is a value with placeholders, rendered per request.
	text
	// object is a mapping: an object of the catalogue, a map (headers), or a value of extra.
	object
	// list is a sequence.
	list
	// null removes an inherited field.
	null
)

// node is one value of a document.
type node struct {
	kind  nodeKind
	field *catalogue.Field
	// path names the value for messages: "voiceDetectionOptions.speed", "tools[1].url".
	path string
	pos  source.Pos
	// keyPos is where the value's key is written, for errors about the key itself.
	keyPos source.Pos
	// lit is a literal's value: string, int, float64 or bool.
	lit any
	// text holds the placeholders of a text value; a value that is exactly one placeholder
	// keeps its expression's type.
	text    *Text
	members []member
	items   []*node
	// schemaChecked and schemaErr remember the JSON Schema check of a tool's parameters:
	// merged documents share their nodes, and each would check it again.
	schemaChecked bool
	schemaErr     error
}

type member struct {
	key  string
	node *node
}

// get returns the member called key, or nil.
func (n *node) get(key string) *node {
	for _, m := range n.members {
		if m.key == key {
			return m.node
		}
	}
	return nil
}

// Has and Str make an object node a catalogue.Members.
func (n *node) Has(key string) bool { return n.get(key) != nil }

func (n *node) Str(key string) (string, bool) {
	m := n.get(key)
	if m == nil || m.kind != literal {
		return "", false
	}
	s, ok := m.lit.(string)
	return s, ok
}

func (n *node) keys() []string {
	keys := make([]string, len(n.members))
	for i, m := range n.members {
		keys[i] = m.key
	}
	return keys
}

// anyValue is the catalogue field of a value of `extra` and of a JSON Schema's members.
var anyValue = &catalogue.Field{Name: "value", Kind: catalogue.Any}

// parser reads the YAML of one file into a document.
type parser struct {
	path string
	c    *expression.Compiler
	errs source.Errors
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// parse reads n as a value of f. It returns nil when the value is wrong (the error is
// recorded).
func (p *parser) parse(f *catalogue.Field, n *yaml.Node, path string, keyPos source.Pos) *node {
	n = resolveAlias(n)
	out := &node{field: f, path: path, pos: source.At(p.path, n), keyPos: keyPos}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		out.kind = null
		return out
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" && strings.Contains(n.Value, openDelim) {
		return p.placeholders(f, n, out)
	}
	switch f.Kind {
	case catalogue.Object, catalogue.Map, catalogue.Schema, catalogue.Any:
		switch n.Kind {
		case yaml.MappingNode:
			return p.mapping(f, n, out)
		case yaml.SequenceNode:
			if f.Kind == catalogue.Any {
				return p.sequence(anyValue, n, out)
			}
		case yaml.ScalarNode:
			if f.Kind == catalogue.Any {
				return p.scalar(f, n, out)
			}
		}
	case catalogue.List:
		if n.Kind == yaml.SequenceNode {
			return p.sequence(f.Items, n, out)
		}
	default:
		if n.Kind == yaml.ScalarNode {
			return p.scalar(f, n, out)
		}
	}
	p.errs.Addf(out.pos, "%s must be %s, got %s", describePath(path, f), f.Expect(), source.Describe(n))
	return nil
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// scalar reads a literal string, number or boolean and checks it against f.
func (p *parser) scalar(f *catalogue.Field, n *yaml.Node, out *node) *node {
	out.kind = literal
	switch n.ShortTag() {
	case "!!str":
		out.lit = n.Value
	case "!!bool":
		var v bool
		if err := n.Decode(&v); err != nil {
			p.errs.Addf(out.pos, "%s must be true or false, got %q", out.path, n.Value)
			return nil
		}
		out.lit = v
	case "!!int":
		var v int
		if err := n.Decode(&v); err != nil {
			p.errs.Addf(out.pos, "%s: %s is not an integer this service can hold", out.path, n.Value)
			return nil
		}
		out.lit = v
	case "!!float":
		var v float64
		if err := n.Decode(&v); err != nil {
			p.errs.Addf(out.pos, "%s: %s is not a number", out.path, n.Value)
			return nil
		}
		out.lit = v
	default:
		p.errs.Addf(out.pos, "%s must be %s, got %s", out.path, f.Expect(), source.Describe(n))
		return nil
	}
	return p.checkLiteral(out)
}

// checkLiteral checks a literal value against its field.
func (p *parser) checkLiteral(out *node) *node {
	if out.field.Kind == catalogue.Any {
		return out
	}
	if msg := out.field.CheckScalar(out.lit); msg != "" {
		p.errs.Addf(out.pos, "%s %s%s", out.path, msg, slip(out.field, out.lit))
		return nil
	}
	return out
}

// slip names a common slip behind a literal of the wrong type: a quoted number, yes or no for
// a boolean.
func slip(f *catalogue.Field, v any) string {
	s, ok := v.(string)
	if !ok {
		return ""
	}
	switch f.Kind {
	case catalogue.Integer, catalogue.Number:
		if _, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
			return " (remove the quotes to make it a number)"
		}
	case catalogue.Boolean:
		switch strings.ToLower(s) {
		case "yes", "no", "on", "off", "y", "n", "true", "false":
			return " (write true or false, without quotes)"
		}
	}
	return ""
}

// placeholders reads a string with placeholders. A value that is exactly one placeholder keeps
// the expression's type, so it may stand for a number, a boolean, an object or a list; mixed
// text is a string. Placeholders that read nothing of the request are evaluated now and the
// value checked like a literal.
func (p *parser) placeholders(f *catalogue.Field, n *yaml.Node, out *node) *node {
	if f.Literal && (f.Kind == catalogue.Object || f.Kind == catalogue.Map) {
		p.errs.Addf(out.pos, "%s must be a mapping written out, not a placeholder: placeholders go inside it, in its values", describePath(out.path, f))
		return nil
	}
	if f.Literal {
		why := "the fields a tool takes depend on it"
		if out.path == keyExtends {
			why = "inheritance is resolved when the configuration loads, not per request"
		}
		p.errs.Addf(out.pos, "%s must be written as a plain value, not a placeholder: %s", out.path, why)
		return nil
	}
	t, errs := ParseText(p.path, n, out.path, p.c)
	if errs != nil {
		p.errs.Add(errs...)
		return nil
	}
	_, single := t.Single()
	if f.Kind != catalogue.String && f.Kind != catalogue.Any && !single {
		p.errs.Addf(out.pos, "%s must be %s or a single {{ placeholder }} giving one, got text around a placeholder (%s)", out.path, f.Expect(), catalogue.Describe(n.Value))
		return nil
	}
	if !t.Constant() {
		if prog, ok := t.Single(); ok {
			if msg := p.typeMismatch(f, prog.Source().String()); msg != "" {
				e := source.Errorf(out.pos, "%s %s", out.path, msg)
				e.Code = source.CodeExpression
				p.errs.Add(e)
				return nil
			}
		}
		out.kind, out.text = text, t
		return out
	}
	v, err := t.evalConstant()
	if err != nil {
		p.errs.Addf(out.pos, "%s: %v", out.path, err)
		return nil
	}
	out.kind, out.lit = literal, v
	switch v.(type) {
	case string, int, float64, bool:
	default:
		p.errs.Addf(out.pos, "%s: the placeholder gives %s; a placeholder evaluated at load must give a string, number or boolean", out.path, catalogue.Describe(v))
		return nil
	}
	if f.Kind == catalogue.String {
		if s, ok := stringOf(v); ok {
			out.lit = s
		}
	}
	return p.checkLiteral(out)
}

// typeMismatch says what is wrong with a single placeholder whose type is known when the
// configuration loads (from the metadata schema, or from literals) and can never fit f, and
// checks the URL given to sign() as literal text; "" when nothing is known to be wrong.
func (p *parser) typeMismatch(f *catalogue.Field, src string) string {
	if f.Format == catalogue.URL {
		if tree, err := exprparser.Parse(src); err == nil {
			if call, ok := tree.Node.(*ast.CallNode); ok && len(call.Arguments) > 0 {
				id, isIdent := call.Callee.(*ast.IdentifierNode)
				lit, isString := call.Arguments[0].(*ast.StringNode)
				if isIdent && isString && id.Value == "sign" {
					if msg := f.CheckString(lit.Value); msg != "" {
						return "(the URL given to sign()) " + msg
					}
				}
			}
		}
	}
	t, err := p.c.Type(src)
	if err != nil || t == nil {
		return ""
	}
	ok := true
	switch f.Kind {
	case catalogue.String:
		// A number or boolean renders as text; it can never be a UUID, a URL or one of a
		// list of values.
		constrained := f.Format != catalogue.Text || f.Pattern != nil || f.Values != nil
		ok = !constrained || t.Kind() == reflect.String
	case catalogue.Boolean:
		ok = t.Kind() == reflect.Bool
	case catalogue.Integer, catalogue.Number:
		ok = t.Kind() >= reflect.Int && t.Kind() <= reflect.Float64
	case catalogue.Object, catalogue.Map, catalogue.Schema:
		ok = t.Kind() == reflect.Map
	case catalogue.List:
		ok = t.Kind() == reflect.Slice || t.Kind() == reflect.Array
	}
	if ok {
		return ""
	}
	return fmt.Sprintf("must be %s, but {{ %s }} is always %s (from the metadata schema)", f.Expect(), src, typeWords(t))
}

// typeWords names an expression's type for people.
func typeWords(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Float64:
		return "a number"
	case reflect.Map:
		return "a mapping"
	case reflect.Slice, reflect.Array:
		return "a list"
	}
	return "a " + t.String()
}

// mapping reads an object, a map, a JSON Schema or an object of extra.
func (p *parser) mapping(f *catalogue.Field, n *yaml.Node, out *node) *node {
	out.kind = object
	var known []string
	if f.Kind == catalogue.Object {
		known = f.Names()
	}
	top := f == catalogue.PersonaFile || f == catalogue.Set
	if top {
		// Fields of the request's top level, written beside the persona's by mistake, get
		// a hint instead of a bare "unknown field".
		for _, m := range catalogue.Session.Fields {
			if f.Member(m.Name) == nil {
				known = append(known, m.Name)
			}
		}
	}

	pairs, errs := source.Mapping(p.path, n, describePath(out.path, f), known)
	p.errs.Add(errs...)
	ok := len(errs) == 0
	for _, pair := range pairs {
		switch {
		case top && f.Member(pair.Key) == nil:
			p.errs.Addf(source.At(p.path, pair.KeyN), "%s belongs under session: (session: {%s: …}), as it is a field of the request, not of personaConfig", pair.Key, pair.Key)
			ok = false
			continue
		case f.Kind == catalogue.Map:
			if msg := f.CheckKey(pair.Key); msg != "" {
				p.errs.Addf(source.At(p.path, pair.KeyN), "%s: %s", joinPath(out.path, pair.Key), msg)
				ok = false
				continue
			}
		}
		sub := memberField(f, pair.Key)
		if f.Name == "extra" {
			if msg := typedInExtra(out.path, pair.Key); msg != "" {
				p.errs.Addf(source.At(p.path, pair.KeyN), "%s", msg)
				ok = false
				continue
			}
		}
		if f.Kind == catalogue.Schema && (!schemaText(pair.Key) || resolveAlias(pair.Value).Kind != yaml.ScalarNode) && hasPlaceholder(pair.Value) {
			p.errs.Addf(source.At(p.path, pair.Value), "%s: placeholders in a tool's parameters may only stand in description and title, where they cannot make the schema invalid", joinPath(out.path, pair.Key))
			ok = false
			continue
		}
		v := p.parse(sub, pair.Value, joinPath(out.path, pair.Key), source.At(p.path, pair.KeyN))
		if v == nil {
			ok = false
			continue
		}
		out.members = append(out.members, member{pair.Key, v})
	}
	if !ok {
		return nil
	}
	return out
}

// memberField is the catalogue field of the member key of a value of f.
func memberField(f *catalogue.Field, key string) *catalogue.Field {
	switch f.Kind {
	case catalogue.Object:
		return f.Member(key)
	case catalogue.Map:
		return f.Items
	}
	return anyValue // a JSON Schema's members too: hasPlaceholder keeps placeholders to its texts
}

func describePath(path string, f *catalogue.Field) string {
	if path == "" {
		return f.Name
	}
	return path
}

// typedInExtra says why key cannot be in the extra mapping at path: the catalogue knows it, or
// it is not a field name at all.
func typedInExtra(path, key string) string {
	switch key {
	case "":
		return path + ": an empty key is not a field name"
	case keyExtends, keySession, keyExtra:
		if path == "extra" {
			return fmt.Sprintf("%s.%s: %s is part of the persona file, not a personaConfig field; write it at the top level", path, key, key)
		}
	}
	known := catalogue.PersonaConfig
	if path == "session.extra" {
		known = catalogue.Request
	}
	if known.Member(key) == nil {
		return ""
	}
	where := "the typed field"
	if path == "session.extra" && key != "personaConfig" {
		where = "the typed field session."
		return fmt.Sprintf("%s.%s is a field persona-router knows: use %s%s instead of extra", path, key, where, key)
	}
	if key == "personaConfig" {
		return fmt.Sprintf("%s.%s: personaConfig is written at the top level of a persona file, not in extra", path, key)
	}
	return fmt.Sprintf("%s.%s is a field persona-router knows: use %s %s instead of extra", path, key, where, strconv.Quote(key))
}

// schemaText tells the keys of a JSON Schema whose values are prose for the LLM.
func schemaText(key string) bool { return key == "description" || key == "title" }

// hasPlaceholder tells whether a part of a JSON Schema holds a placeholder anywhere but in the
// text of a description or title keyword (a property named "description" holds a schema, and
// is searched).
func hasPlaceholder(n *yaml.Node) bool {
	n = resolveAlias(n)
	if n.Kind == yaml.ScalarNode {
		return strings.Contains(n.Value, openDelim)
	}
	for i, c := range n.Content {
		if n.Kind == yaml.MappingNode && i%2 == 1 && schemaText(n.Content[i-1].Value) && resolveAlias(c).Kind == yaml.ScalarNode {
			continue
		}
		if hasPlaceholder(c) {
			return true
		}
	}
	return false
}

func (p *parser) sequence(items *catalogue.Field, n *yaml.Node, out *node) *node {
	out.kind = list
	ok := true
	for i, item := range n.Content {
		v := p.parse(items, item, fmt.Sprintf("%s[%d]", out.path, i), source.Pos{})
		switch {
		case v == nil:
			ok = false
		case v.kind == null:
			p.errs.Addf(v.pos, "%s[%d] is null (a list item must be a value)", out.path, i)
			ok = false
		default:
			out.items = append(out.items, v)
		}
	}
	if !ok {
		return nil
	}
	return out
}

// merge returns over merged deeply onto base: objects merge key by key (over's keys win),
// anything else is replaced, and a null in over removes the key. Neither input is modified.
func merge(base, over *node) *node {
	if over == nil {
		return base
	}
	if base == nil || base.kind != object || over.kind != object {
		return over
	}
	out := *over
	out.members = make([]member, 0, len(base.members)+len(over.members))
	for _, m := range base.members {
		if o := over.get(m.key); o != nil {
			m.node = merge(m.node, o)
		}
		out.members = append(out.members, m)
	}
	for _, m := range over.members {
		if base.get(m.key) == nil {
			out.members = append(out.members, m)
		}
	}
	return &out
}

// prune drops the nulls of a merged document, in list items too: what they removed is gone,
// and there is nothing above them to remove.
func prune(n *node) *node {
	if n == nil || n.kind == null {
		return nil
	}
	if n.kind == list {
		out := *n
		out.items = make([]*node, len(n.items))
		for i, item := range n.items {
			out.items[i] = prune(item) // never nil: the parser refuses null items
		}
		return &out
	}
	if n.kind != object {
		return n
	}
	out := *n
	out.members = make([]member, 0, len(n.members))
	for _, m := range n.members {
		if v := prune(m.node); v != nil {
			out.members = append(out.members, member{m.key, v})
		}
	}
	if len(out.members) == 0 && len(n.members) > 0 {
		return nil // every member removed: nothing is left to send
	}
	return &out
}
