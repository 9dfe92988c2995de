// Package rules reads routing rules and decides, for one request, which rule picks the
// persona.
package rules

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"

	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"

	"github.com/persona-router/persona-router/internal/budget"
	"github.com/persona-router/persona-router/internal/catalogue"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/persona"
	"github.com/persona-router/persona-router/internal/schema"
	"github.com/persona-router/persona-router/internal/source"
)

// Rule routes matching requests to a persona.
type Rule struct {
	Name     string
	When     string
	Persona  string
	Priority int
	// Set changes persona fields for requests this rule routes; nil when the rule has none.
	Set *persona.Doc
	// Overlay rules pick no persona: every overlay that matches applies its Set over the
	// persona the winning rule (or the default) chose.
	Overlay bool
	Pos     source.Pos
	// PersonaPos is where the persona is named, for errors about it.
	PersonaPos source.Pos
	// Order is the rule's place in decision order, from 0.
	Order int

	// contexts lists the only request contexts the rule can match; nil means any.
	contexts []string
	// program is `when`, without the context conjuncts when contexts is not nil: the index
	// guarantees them for every request that reaches the rule. nil when nothing is left (the
	// rule matches every request of its contexts).
	program *vm.Program
}

// File is one rules file.
type File struct {
	Path  string
	Rules []*Rule
	Tests []*Test
	// Metadata declares what request metadata may hold.
	Metadata []*schema.Field
	// Budgets limit what sessions the requests this configuration routes may cost.
	Budgets []*budget.Budget
}

var (
	fileKeys = []string{"rules", "tests", "metadata", "budgets"}
	ruleKeys = []string{"name", "when", "persona", "priority", "set", "overlay"}
)

// Parse reads one rules file, compiling its expressions with c. An empty file is valid and
// holds nothing.
func Parse(path string, data []byte, c *expression.Compiler) (*File, source.Errors) {
	root, perrs := source.Parse(path, data)
	if perrs != nil {
		return nil, perrs
	}
	md, errs := Metadata(path, root)
	f, ferrs := ParseTree(path, root, c)
	if errs = append(errs, ferrs...); len(errs) > 0 {
		return nil, errs
	}
	f.Metadata = md
	return f, nil
}

// Metadata reads the `metadata:` section of a rules file parsed by source.Parse: what request
// metadata may hold. A loader reads every file's section before compiling any expression, so
// that expressions are type-checked against the merged declaration.
func Metadata(path string, root *yaml.Node) ([]*schema.Field, source.Errors) {
	if root == nil || root.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "metadata" && root.Content[i+1].ShortTag() != "!!null" {
			return schema.Parse(path, root.Content[i+1])
		}
	}
	return nil, nil
}

// Entries returns the entries of the rules and tests lists of a rules file parsed by
// source.Parse, without reading them, so that a loader can hold a configuration to its limits
// before compiling anything. A list of the wrong shape has no entries (ParseTree reports it);
// a list given twice counts twice, though ParseTree reads only the first.
func Entries(root *yaml.Node) (ruleNodes, testNodes []*yaml.Node) {
	if root == nil || root.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		var dst *[]*yaml.Node
		switch root.Content[i].Value {
		case "rules":
			dst = &ruleNodes
		case "tests":
			dst = &testNodes
		default:
			continue
		}
		if items, err := source.Sequence("", root.Content[i+1], ""); err == nil {
			*dst = append(*dst, items...)
		}
	}
	return ruleNodes, testNodes
}

// ParseTree reads the rules and tests of a rules file parsed by source.Parse, compiling their
// expressions with c; its metadata section is Metadata's to read.
func ParseTree(path string, root *yaml.Node, c *expression.Compiler) (*File, source.Errors) {
	f := &File{Path: path}
	if root == nil {
		return f, nil
	}
	pairs, errs := source.Mapping(path, root, "rules file", fileKeys)
	for _, p := range pairs {
		if p.Value.ShortTag() == "!!null" {
			continue // a section with everything commented out
		}
		if p.Key == "metadata" {
			continue
		}
		if p.Key == "budgets" {
			budgets, berrs := budget.Parse(path, p.Value, c)
			errs.Add(berrs...)
			f.Budgets = budgets
			continue
		}
		items, err := source.Sequence(path, p.Value, p.Key)
		if err != nil {
			errs.Add(err)
			continue
		}
		for _, item := range items {
			switch p.Key {
			case "rules":
				r, rerrs := parseRule(path, item, c)
				errs.Add(rerrs...)
				if r != nil {
					f.Rules = append(f.Rules, r)
				}
			case "tests":
				t, terrs := parseTest(path, item)
				errs.Add(terrs...)
				if t != nil {
					f.Tests = append(f.Tests, t)
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return f, nil
}

func parseRule(path string, n *yaml.Node, c *expression.Compiler) (*Rule, source.Errors) {
	pairs, errs := source.Mapping(path, n, "rule", ruleKeys)
	r := &Rule{Pos: source.At(path, n)}
	var whenNode *yaml.Node
	for _, p := range pairs {
		var err *source.Error
		switch p.Key {
		case "name":
			r.Name, err = source.NonEmptyString(path, p.Value, "name")
		case "when":
			r.When, err = source.NonEmptyString(path, p.Value, "when")
			whenNode = p.Value
		case "persona":
			r.Persona, err = source.NonEmptyString(path, p.Value, "persona")
			r.PersonaPos = source.At(path, p.Value)
		case "overlay":
			r.Overlay, err = source.Bool(path, p.Value, "overlay")
		case "priority":
			r.Priority, err = source.Int(path, p.Value, "priority")
		case "set":
			// An overlay's placeholders may read persona, the config rendered so far.
			overlay := slices.ContainsFunc(pairs, func(q source.Field) bool { return q.Key == "overlay" && q.Value.Value == "true" })
			if overlay {
				c.AllowPersona(catalogue.PersonaConfig.Names())
			}
			set, serrs := persona.ParseSet(path, p.Value, c)
			c.AllowPersona(nil)
			errs.Add(serrs...)
			r.Set = set
		}
		if err != nil {
			errs.Add(err)
		}
	}
	required := []string{"name", "when", "persona"}
	if r.Overlay {
		required = []string{"name", "when", "set"}
		if has(pairs, "persona") {
			errs.Addf(r.PersonaPos, "rule %s is an overlay: it changes the persona another rule chose, so it names no persona of its own (remove persona, or overlay)", describeRule(r.Name))
		}
	}
	for _, key := range required {
		if !has(pairs, key) && !source.Misspelt(n, key) {
			what := "required"
			if r.Overlay {
				what = "required for an overlay"
			}
			errs.Addf(r.Pos, "rule %s has no %s (%s)", describeRule(r.Name), key, what)
		}
	}
	if whenNode != nil && r.When != "" {
		if err := r.compile(path, whenNode, c); err != nil {
			errs.Add(err)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return r, nil
}

func has(pairs []source.Field, key string) bool {
	return slices.ContainsFunc(pairs, func(p source.Field) bool { return p.Key == key })
}

func describeRule(name string) string {
	if name == "" {
		return "(unnamed)"
	}
	return fmt.Sprintf("%q", name)
}

var boolType = reflect.TypeOf(true)

// compile compiles `when` and works out which contexts it can match. An expression whose type
// is known and not boolean is rejected here; one whose type depends on run-time values
// (metadata.flag) is checked on every evaluation instead.
func (r *Rule) compile(path string, n *yaml.Node, c *expression.Compiler) *source.Error {
	prog, err := c.Check(r.When)
	if err != nil {
		return expression.ErrorAt(path, n, 0, "when", err)
	}
	t := prog.Node().Type()
	if typed, err := c.Type(r.When); err != nil {
		return expression.ErrorAt(path, n, 0, "when", err)
	} else if typed != nil {
		t = typed // known from the metadata schema
	}
	if t != nil && t.Kind() != reflect.Interface && t != boolType {
		return coded(source.CodeExpression, source.Errorf(source.At(path, n), "when must be a boolean expression (like context == \"sales\"), but %q is a %s", r.When, t))
	}
	if r.contexts, r.program, err = index(r.When, c); err != nil {
		return expression.ErrorAt(path, n, 0, "when", err)
	}
	return nil
}

// Test is a rule test: a request and what deciding it must give.
type Test struct {
	Name  string
	Pos   source.Pos
	Input expression.Input
	// Expect holds what is checked; nil pointers are not checked.
	ExpectPersona *string
	// ExpectRule is the rule expected to match; ExpectDefault asks for no rule (`rule: null`).
	ExpectRule    *string
	ExpectDefault bool
	// ExpectOverlays lists the overlay rules expected to apply, in the order they apply; nil
	// when not checked.
	ExpectOverlays []string
	// RulePos, PersonaPos and OverlaysPos are where expect.rule, expect.persona and
	// expect.overlays are written.
	RulePos, PersonaPos, OverlaysPos source.Pos
	// RequestPos is where each part of the request is written: "context", "metadata", "user",
	// and "metadata.<key>" for each key of the metadata.
	RequestPos map[string]source.Pos
	// ExpectConfig lists the fields expected of the rendered personaConfig, and ExpectSession
	// those of the rendered request's top level (clientLabel, sessionOptions, extra fields).
	ExpectConfig  []ConfigExpectation
	ExpectSession []ConfigExpectation
}

// ConfigExpectation is one expected field of the rendered request. A mapping matches a
// rendered object that has at least its keys, each matching; a list matches a list of as many
// items, each matching; anything else must be equal.
type ConfigExpectation struct {
	Field string
	Value any
	Pos   source.Pos
	// Known tells a field of the catalogue from one of `extra`: only a known field that is
	// left out compares as its zero value.
	Known bool
	// Node is the expectation as written, for positions below the field.
	Node *yaml.Node
}

var (
	testKeys    = []string{"name", "request", "expect"}
	requestKeys = []string{"context", "metadata", "user"}
	expectKeys  = []string{"persona", "rule", "overlays", "personaConfig", "session"}
)

func parseTest(path string, n *yaml.Node) (*Test, source.Errors) {
	pairs, errs := source.Mapping(path, n, "test", testKeys)
	t := &Test{Pos: source.At(path, n)}
	for _, p := range pairs {
		switch p.Key {
		case "name":
			var err *source.Error
			if t.Name, err = source.NonEmptyString(path, p.Value, "test name"); err != nil {
				errs.Add(err)
			}
		case "request":
			errs.Add(t.parseRequest(path, p.Value)...)
		case "expect":
			errs.Add(t.parseExpect(path, p.Value)...)
		}
	}
	if !has(pairs, "name") && !source.Misspelt(n, "name") {
		errs.Addf(t.Pos, "test has no name (required)")
	}
	if !has(pairs, "expect") && !source.Misspelt(n, "expect") {
		errs.Addf(t.Pos, "test %s has no expect (expected persona, rule and/or personaConfig)", describeRule(t.Name))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return t, nil
}

func (t *Test) parseRequest(path string, n *yaml.Node) source.Errors {
	pairs, errs := source.Mapping(path, n, "request", requestKeys)
	t.RequestPos = make(map[string]source.Pos, len(pairs))
	for _, p := range pairs {
		t.RequestPos[p.Key] = source.At(path, p.Value)
		if p.Key == "metadata" && p.Value.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(p.Value.Content); i += 2 {
				t.RequestPos["metadata."+p.Value.Content[i].Value] = source.At(path, p.Value.Content[i])
			}
		}
		switch p.Key {
		case "context":
			v, err := source.String(path, p.Value, "context")
			if err != nil {
				errs.Add(err)
			}
			t.Input.Context = v
		case "metadata", "user":
			m, err := jsonMap(path, p.Value, p.Key)
			if err != nil {
				errs.Add(err)
				continue
			}
			if p.Key == "metadata" {
				t.Input.Metadata = m
			} else {
				t.Input.User = m
			}
		}
	}
	return errs
}

// jsonMap decodes a mapping into the values a JSON request would carry (numbers as float64),
// so that a rule test sees exactly what the server would see.
func jsonMap(path string, n *yaml.Node, what string) (map[string]any, *source.Error) {
	if n.Kind != yaml.MappingNode {
		return nil, source.Errorf(source.At(path, n), "%s must be a mapping, got %s", what, source.Describe(n))
	}
	var raw any
	if err := n.Decode(&raw); err != nil {
		return nil, source.Errorf(source.At(path, n), "%s: %v", what, err)
	}
	v, err := toJSON(raw)
	if err != nil {
		return nil, source.Errorf(source.At(path, n), "%s: %v", what, err)
	}
	m, _ := v.(map[string]any)
	return m, nil
}

// toJSON converts a YAML-decoded value to its JSON-decoded equivalent.
func toJSON(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("cannot be expressed as JSON: %w", err)
	}
	var out any
	return out, json.Unmarshal(b, &out)
}

func (t *Test) parseExpect(path string, n *yaml.Node) source.Errors {
	pairs, errs := source.Mapping(path, n, "expect", expectKeys)
	for _, p := range pairs {
		switch p.Key {
		case "persona":
			v, err := source.String(path, p.Value, "expect.persona")
			if err != nil {
				errs.Add(err)
				continue
			}
			t.ExpectPersona, t.PersonaPos = &v, source.At(path, p.Value)
		case "rule":
			t.RulePos = source.At(path, p.Value)
			if p.Value.ShortTag() == "!!null" {
				t.ExpectDefault = true
				continue
			}
			v, err := source.String(path, p.Value, "expect.rule (a rule name, or null for no rule)")
			if err != nil {
				errs.Add(err)
				continue
			}
			t.ExpectRule = &v
		case "overlays":
			t.OverlaysPos = source.At(path, p.Value)
			items, err := source.Sequence(path, p.Value, "expect.overlays (a list of overlay rule names)")
			if err != nil {
				errs.Add(err)
				continue
			}
			t.ExpectOverlays = []string{}
			for _, item := range items {
				name, err := source.NonEmptyString(path, item, "expect.overlays item")
				if err != nil {
					errs.Add(err)
					continue
				}
				t.ExpectOverlays = append(t.ExpectOverlays, name)
			}
		case "personaConfig":
			t.ExpectConfig, errs = expectations(path, p.Value, "expect.personaConfig", catalogue.PersonaConfig.Names(), errs)
		case "session":
			t.ExpectSession, errs = expectations(path, p.Value, "expect.session", catalogue.Session.Names(), errs)
		}
	}
	return errs
}

// Matchers compare a rendered string other than exactly: `{contains: "…"}`, `{notContains:
// "…"}`, `{matches: "regex"}`.
var matchers = []string{"contains", "notContains", "matches"}

// Matcher returns the matcher an expected value is, if it is one: a mapping of exactly one of
// the matcher keys to a string.
func Matcher(want any) (op, arg string, ok bool) {
	m, isMap := want.(map[string]any)
	if !isMap || len(m) != 1 {
		return "", "", false
	}
	for k, v := range m {
		s, isString := v.(string)
		if isString && slices.Contains(matchers, k) {
			return k, s, true
		}
	}
	return "", "", false
}

// checkMatchers reports, in an expected value as written, a `matches:` whose pattern does not
// compile.
func checkMatchers(path string, n *yaml.Node, what string, errs *source.Errors) {
	switch n.Kind {
	case yaml.MappingNode:
		if len(n.Content) == 2 && n.Content[0].Value == "matches" && n.Content[1].Kind == yaml.ScalarNode {
			if _, err := regexp.Compile(n.Content[1].Value); err != nil {
				errs.Addf(source.At(path, n.Content[1]), "%s: matches: %q is not a valid regular expression: %v", what, n.Content[1].Value, err)
			}
			return
		}
		for i := 1; i < len(n.Content); i += 2 {
			checkMatchers(path, n.Content[i], what, errs)
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			checkMatchers(path, item, what, errs)
		}
	}
}

// nestedTypos reports, in an expectation written for the catalogue field f, keys at any depth
// that are typos of the field's members: a misspelt key expecting an empty value would
// otherwise pass, checking nothing.
func nestedTypos(path string, n *yaml.Node, f *catalogue.Field, what string, errs *source.Errors) {
	switch {
	case n.Kind == yaml.SequenceNode && f.Kind == catalogue.List:
		for i, item := range n.Content {
			nestedTypos(path, item, f.Items, fmt.Sprintf("%s[%d]", what, i), errs)
		}
	case n.Kind == yaml.MappingNode && f.Kind == catalogue.Object:
		if len(n.Content) == 2 && slices.Contains(matchers, n.Content[0].Value) {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			member := f.Member(key)
			if member == nil {
				if hint := source.Suggest(key, f.Names()); hint != "" {
					errs.Add(coded(source.CodeUnknownField, source.Errorf(source.At(path, n.Content[i]), "unknown field %q in %s%s", key, what, hint)))
				}
				continue
			}
			nestedTypos(path, n.Content[i+1], member, what+"."+key, errs)
		}
	}
}

// expectations reads the expected fields of a part of the rendered request. known lists the
// fields that part is known to have: a key close to one of them is taken for a typo of it
// (did-you-mean); any other key is a field of `extra`.
func expectations(path string, n *yaml.Node, what string, known []string, errs source.Errors) ([]ConfigExpectation, source.Errors) {
	fields, ferrs := source.Mapping(path, n, what, nil)
	errs = append(errs, ferrs...)
	var out []ConfigExpectation
	for _, f := range fields {
		if !slices.Contains(known, f.Key) {
			if hint := source.Suggest(f.Key, known); hint != "" {
				e := source.Errorf(source.At(path, f.KeyN), "unknown field %q in %s%s", f.Key, what, hint)
				e.Code = source.CodeUnknownField
				errs.Add(e)
				continue
			}
		}
		var raw any
		if err := f.Value.Decode(&raw); err != nil {
			errs.Addf(source.At(path, f.Value), "%s.%s: %v", what, f.Key, err)
			continue
		}
		checkMatchers(path, f.Value, what+"."+f.Key, &errs)
		if field := catalogue.PersonaConfig.Member(f.Key); field != nil && what == "expect.personaConfig" {
			nestedTypos(path, f.Value, field, what+"."+f.Key, &errs)
		} else if field := catalogue.Session.Member(f.Key); field != nil && what == "expect.session" {
			nestedTypos(path, f.Value, field, what+"."+f.Key, &errs)
		}
		v, err := toJSON(raw)
		if err != nil {
			errs.Addf(source.At(path, f.Value), "%s.%s %v", what, f.Key, err)
			continue
		}
		out = append(out, ConfigExpectation{Field: f.Key, Value: v, Pos: source.At(path, f.Value), Known: slices.Contains(known, f.Key), Node: f.Value})
	}
	return out, errs
}

func coded(code string, e *source.Error) *source.Error {
	e.Code = code
	return e
}
