package decide

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/persona-router/persona-router/internal/rules"
	"github.com/persona-router/persona-router/internal/schema"
	"github.com/persona-router/persona-router/internal/source"
)

// Coverage is what the rule tests of a configuration found: how many passed, and which rules
// none of them reaches.
type Coverage struct {
	Passed    int
	Uncovered []*rules.Rule
}

// RunTests runs the rule tests of files against the decider and records which rules they
// reach. A failing test fails the load: each failing expectation is reported at its own line,
// with what it got and wanted, in a source.Errors. A test that names a rule or persona no file
// defines, or whose request the service would refuse, is reported at that name or key. When
// ctx ends, it stops between two tests and returns ctx's error: each test's evaluations are
// bounded by the expression budget, so it stops promptly.
func (d *Decider) RunTests(ctx context.Context, files []*rules.File) (Coverage, error) {
	var errs source.Errors
	var cov Coverage
	reached := make(map[*rules.Rule]bool)
	for _, f := range files {
		for _, t := range f.Tests {
			if err := ctx.Err(); err != nil {
				return Coverage{}, err
			}
			if names := d.unknownNames(t); len(names) > 0 {
				errs.Add(source.Coded(source.CodeTestInvalid, names)...)
				continue
			}
			if refused := d.refused(t); refused != nil {
				errs.Add(source.Coded(source.CodeTestInvalid, source.Errors{refused})...)
				continue
			}
			res := d.Decide(t.Input, false)
			if res.Rule != nil {
				reached[res.Rule] = true
			}
			for _, o := range res.Overlays {
				reached[o] = true
			}
			if problems := check(t, &res); len(problems) > 0 {
				for _, p := range problems {
					e := source.Errorf(p.pos, "test %q failed: %s", t.Name, p.msg)
					e.Code = source.CodeTestFailed
					errs.Add(e)
				}
				continue
			}
			cov.Passed++
		}
	}
	for _, r := range d.rules.Rules() {
		if !reached[r] {
			cov.Uncovered = append(cov.Uncovered, r)
		}
	}
	return cov, errs.Err()
}

// unknownNames reports an expect.rule or expect.persona that names nothing the configuration
// defines: a typo, not a routing result.
func (d *Decider) unknownNames(t *rules.Test) source.Errors {
	var errs source.Errors
	if t.ExpectRule != nil && !slices.ContainsFunc(d.Rules(), func(r *rules.Rule) bool { return r.Name == *t.ExpectRule }) {
		names := make([]string, len(d.Rules()))
		for i, r := range d.Rules() {
			names[i] = r.Name
		}
		errs.Addf(t.RulePos, "test %q: expect.rule names %q, which no rules file defines%s (null means no rule)", t.Name, *t.ExpectRule, source.Suggest(*t.ExpectRule, names))
	}
	for _, name := range t.ExpectOverlays {
		if !slices.ContainsFunc(d.Rules(), func(r *rules.Rule) bool { return r.Name == name && r.Overlay }) {
			errs.Addf(t.OverlaysPos, "test %q: expect.overlays names %q, which is no overlay rule", t.Name, name)
		}
	}
	if t.ExpectPersona != nil && !slices.Contains(d.personas, *t.ExpectPersona) {
		errs.Addf(t.PersonaPos, "test %q: expect.persona names %q, which no persona file defines%s (personas: %s)", t.Name, *t.ExpectPersona, source.Suggest(*t.ExpectPersona, d.PersonaIDs()), strings.Join(d.PersonaIDs(), ", "))
	}
	return errs
}

// refused reports a test request the token endpoint would refuse, at the key at fault, with the
// answer it would get.
func (d *Decider) refused(t *rules.Test) *source.Error {
	if !schema.ValidContext(t.Input.Context) {
		return source.Errorf(requestPos(t, "context"), "test %q: its request would be refused with 400 invalid_request: %s", t.Name, schema.ContextRule)
	}
	err := d.metadata.Validate(t.Input.Metadata)
	if err == nil {
		return nil
	}
	at := requestPos(t, "metadata")
	var ke *schema.KeyError
	if errors.As(err, &ke) {
		at = requestPos(t, "metadata."+ke.Key)
	}
	return source.Errorf(at, "test %q: its request would be refused with 422 invalid_metadata: %v", t.Name, err)
}

func requestPos(t *rules.Test, part string) source.Pos {
	if pos, ok := t.RequestPos[part]; ok {
		return pos
	}
	return t.Pos
}

// failure is one expectation a test failed, at the line of the expectation.
type failure struct {
	pos source.Pos
	msg string
}

// check compares a result with a test's expectations and describes each difference.
func check(t *rules.Test, res *Result) []failure {
	var problems []failure
	got := "null (no rule matched)"
	if res.Rule != nil {
		got = fmt.Sprintf("%q (%s)", res.Rule.Name, res.Rule.Pos)
	}
	switch {
	case t.ExpectDefault && res.Rule != nil:
		problems = append(problems, failure{t.RulePos, fmt.Sprintf("expect.rule: got %s, want null (no rule matched)", got)})
	case t.ExpectRule != nil && (res.Rule == nil || res.Rule.Name != *t.ExpectRule):
		problems = append(problems, failure{t.RulePos, fmt.Sprintf("expect.rule: got %s, want %q", got, *t.ExpectRule)})
	}
	if t.ExpectOverlays != nil {
		got := make([]string, len(res.Overlays))
		for i, o := range res.Overlays {
			got[i] = o.Name
		}
		if !slices.Equal(got, t.ExpectOverlays) {
			problems = append(problems, failure{t.OverlaysPos, fmt.Sprintf("expect.overlays: got %s, want %s", jsonText(got), jsonText(t.ExpectOverlays))})
		}
	}
	if t.ExpectPersona != nil && res.Persona != *t.ExpectPersona {
		problems = append(problems, failure{t.PersonaPos, fmt.Sprintf("expect.persona: got %q, want %q", res.Persona, *t.ExpectPersona)})
	}
	if len(t.ExpectConfig) == 0 && len(t.ExpectSession) == 0 {
		return problems
	}
	if res.Err != nil {
		at := t.Pos
		if len(t.ExpectConfig) > 0 {
			at = t.ExpectConfig[0].Pos
		} else {
			at = t.ExpectSession[0].Pos
		}
		return append(problems, failure{at, fmt.Sprintf("personaConfig: rendering failed: %v", res.Err)})
	}
	var request map[string]any
	if err := json.Unmarshal(res.Request(), &request); err != nil {
		return append(problems, failure{t.Pos, fmt.Sprintf("the rendered request is not JSON: %v", err)})
	}
	config, _ := request["personaConfig"].(map[string]any)
	problems = append(problems, compare("expect.personaConfig", config, t.ExpectConfig)...)
	return append(problems, compare("expect.session", request, t.ExpectSession)...)
}

// compare checks the expected fields of one part of the rendered request. A difference is
// reported at the innermost expectation that does not hold, with its path.
func compare(what string, rendered map[string]any, want []rules.ConfigExpectation) []failure {
	var problems []failure
	for _, w := range want {
		got, present := rendered[w.Field]
		field := what + "." + w.Field
		if !present && !w.Known && w.Value != nil {
			problems = append(problems, failure{w.Pos, fmt.Sprintf("%s: the rendered request has no such field, want %s", field, jsonText(w.Value))})
			continue
		}
		if !present && w.Known && zeroDeep(w.Value) {
			continue // empty optional fields are left out of the request
		}
		if path, n, g, wv, differ := mismatch(got, present, w.Value, w.Node, field); differ {
			at := w.Pos
			if n != nil {
				at = source.At(w.Pos.Path, n)
			}
			problems = append(problems, failure{at, fmt.Sprintf("%s: got %s, want %s", path, g, jsonText(wv))})
		}
	}
	return problems
}

// mismatch finds where a rendered value stops matching an expected one: a mapping matches an
// object that has at least its keys, each matching (a key left out matches null, "", 0 and
// false); a list matches a list of as many items, each matching; anything else must be equal.
// It returns the path of the innermost difference, the expectation's node there (nil when
// unknown), what was rendered there, described, and what was expected.
func mismatch(got any, present bool, want any, n *yaml.Node, path string) (string, *yaml.Node, string, any, bool) {
	describe := func() string {
		if !present {
			return "nothing (the field is left out)"
		}
		return jsonText(got)
	}
	if op, arg, ok := rules.Matcher(want); ok {
		g, isString := got.(string)
		if !present {
			g, isString = "", true // a field left out is empty
		}
		if !isString || !matchString(op, arg, g) {
			return path, n, describe(), want, true
		}
		return "", nil, "", nil, false
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !present && zeroDeep(w) {
			return "", nil, "", nil, false // an object left out is an object of empty fields
		}
		if !ok || !present {
			return path, n, describe(), want, true
		}
		for i, k := range mappingKeys(n, w) {
			gv, has := g[k]
			if !has && zeroDeep(w[k]) {
				continue
			}
			if p, at, gd, wv, differ := mismatch(gv, has, w[k], child(n, i, k), path+"."+k); differ {
				return p, at, gd, wv, true
			}
		}
		return "", nil, "", nil, false
	case []any:
		g, ok := got.([]any)
		if !ok || !present {
			return path, n, describe(), want, true
		}
		if len(g) != len(w) {
			return path, n, fmt.Sprintf("%d items (%s)", len(g), jsonText(got)), want, true
		}
		for i := range w {
			var item *yaml.Node
			if n != nil && n.Kind == yaml.SequenceNode && i < len(n.Content) {
				item = n.Content[i]
			}
			if p, at, gd, wv, differ := mismatch(g[i], true, w[i], item, fmt.Sprintf("%s[%d]", path, i)); differ {
				return p, at, gd, wv, true
			}
		}
		return "", nil, "", nil, false
	}
	if !present || !reflect.DeepEqual(got, want) {
		return path, n, describe(), want, true
	}
	return "", nil, "", nil, false
}

// matchString applies a rule-test matcher to a rendered string.
func matchString(op, arg, s string) bool {
	switch op {
	case "contains":
		return strings.Contains(s, arg)
	case "notContains":
		return !strings.Contains(s, arg)
	case "matches":
		re, err := regexp.Compile(arg) // compiled at load already, so it compiles
		return err == nil && re.MatchString(s)
	}
	return false
}

// mappingKeys lists the keys of an expected mapping in the order they are written (sorted when
// the node is not at hand).
func mappingKeys(n *yaml.Node, w map[string]any) []string {
	if n != nil && n.Kind == yaml.MappingNode {
		keys := make([]string, 0, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			keys = append(keys, n.Content[i].Value)
		}
		return keys
	}
	return slices.Sorted(maps.Keys(w))
}

// child returns the value node of the i-th key (k) of a mapping node, or nil.
func child(n *yaml.Node, i int, k string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode || 2*i+1 >= len(n.Content) || n.Content[2*i].Value != k {
		return nil
	}
	return n.Content[2*i+1]
}

// zeroDeep tells whether v is empty all the way down: a zero value, or a mapping of them.
func zeroDeep(v any) bool {
	if m, ok := v.(map[string]any); ok {
		for _, x := range m {
			if !zeroDeep(x) {
				return false
			}
		}
		return true
	}
	return zero(v)
}

// zero tells whether v is what an empty optional field compares as: null, "", 0 or false.
func zero(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case float64:
		return v == 0
	case bool:
		return !v
	}
	return false
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
