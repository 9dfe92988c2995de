package rules

import (
	"fmt"
	"github.com/expr-lang/expr/vm"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/persona-router/persona-router/internal/expression"
)

// layout is the layout of the rules mustSet parsed last.
var layout *expression.Layout

func mustSet(t testing.TB, files ...string) *Set {
	t.Helper()
	c := expression.NewCompiler()
	defer func() { layout = c.Layout() }()
	var parsed []*File
	for i, text := range files {
		f, errs := Parse(fmt.Sprintf("r%d.yaml", i), []byte(text), c)
		if errs != nil {
			t.Fatalf("Parse: %v", errs)
		}
		parsed = append(parsed, f)
	}
	s, errs := NewSet(parsed)
	if errs != nil {
		t.Fatalf("NewSet: %v", errs)
	}
	return s
}

func decide(s *Set, in expression.Input, trace bool) Decision {
	ev := expression.Acquire(in, layout)
	defer ev.Release()
	return s.Decide(ev, in.Context, trace)
}

func TestDecisionOrder(t *testing.T) {
	s := mustSet(t, `
rules:
  - {name: a-low, when: "true", persona: p}
  - {name: a-high, when: "true", persona: p, priority: 5}
  - {name: a-tie, when: "true", persona: p, priority: 5}
`, `
rules:
  - {name: b-high, when: "true", persona: p, priority: 5}
  - {name: b-top, when: "true", persona: p, priority: 9}
`)
	var names []string
	for _, r := range s.Rules() {
		names = append(names, r.Name)
	}
	want := []string{"b-top", "a-high", "a-tie", "b-high", "a-low"}
	if !slices.Equal(names, want) {
		t.Errorf("order = %v, want %v (priority high first, ties by file then position)", names, want)
	}
	if d := decide(s, expression.Input{}, false); d.Rule.Name != "b-top" {
		t.Errorf("decided %s, want b-top", d.Rule.Name)
	}
}

func TestFirstMatchWinsAndNoMatchIsDefault(t *testing.T) {
	s := mustSet(t, `
rules:
  - {name: ent, when: 'context == "support" && metadata.tier == "enterprise"', persona: senior, priority: 10}
  - {name: support, when: 'context == "support"', persona: support}
`)
	for _, tc := range []struct {
		in   expression.Input
		want string
	}{
		{expression.Input{Context: "support", Metadata: map[string]any{"tier": "enterprise"}}, "ent"},
		{expression.Input{Context: "support", Metadata: map[string]any{"tier": "pro"}}, "support"},
		{expression.Input{Context: "support"}, "support"},
		{expression.Input{Context: "sales"}, ""},
		{expression.Input{}, ""},
	} {
		d := decide(s, tc.in, false)
		got := ""
		if d.Rule != nil {
			got = d.Rule.Name
		}
		if got != tc.want {
			t.Errorf("%+v: decided %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRunTimeFailureIsNotAMatch(t *testing.T) {
	s := mustSet(t, `
rules:
  - {name: concat, when: 'user.id + ":x" == "u:x"', persona: p, priority: 3}
  - {name: flag, when: 'metadata.flag', persona: p, priority: 2}
  - {name: fallback, when: 'true', persona: q}
`)
	d := decide(s, expression.Input{Metadata: map[string]any{"flag": "yes"}}, true)
	if d.Rule == nil || d.Rule.Name != "fallback" {
		t.Fatalf("decided %v, want fallback", d.Rule)
	}
	if len(d.Trace) != 3 || len(d.Failed) != 2 {
		t.Fatalf("trace %d steps, %d failed; want 3 and 2", len(d.Trace), len(d.Failed))
	}
	for i, want := range []string{"invalid operation", "when gave yes (string), not a boolean"} {
		if st := d.Trace[i]; st.Matched || st.Err == nil || !strings.Contains(st.Err.Error(), want) {
			t.Errorf("step %d = %+v, want unmatched with error containing %q", i, st, want)
		}
	}
	// A nil result is not quietly false: it is reported, as is any non-boolean.
	d = decide(s, expression.Input{}, false)
	if len(d.Failed) != 2 || !strings.Contains(d.Failed[1].Err.Error(), "<nil>") {
		t.Errorf("failed = %+v, want the nil flag reported", d.Failed)
	}
	// Tracing is off: nothing is recorded but the failures.
	if d.Trace != nil {
		t.Errorf("trace recorded without being asked for")
	}
}

func TestIndexContexts(t *testing.T) {
	for when, want := range map[string][]string{
		`context == "sales"`:                               {"sales"},
		`"sales" == context`:                               {"sales"},
		`context == "sales" && metadata.tier == "pro"`:     {"sales"},
		`metadata.tier == "pro" and context == 'sales'`:    {"sales"},
		`context in ["a", "b"]`:                            {"a", "b"},
		`context in ["a", "b"] && context == "b"`:          {"b"},
		`context == "a" && context == "b"`:                 {},
		`context == "a" || context == "b"`:                 nil,
		`!(context == "a")`:                                nil,
		`context != "a"`:                                   nil,
		`context in ["a", metadata.x]`:                     nil,
		`metadata.tier == "pro"`:                           nil,
		`(context == "a" && user.id != nil) && true`:       {"a"},
		`let c = context; c == "a"`:                        nil,
		`context == "sales" && bucket(user.id + ":x") < 5`: {"sales"},
	} {
		got, _, err := index(when, expression.NewCompiler())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) || (got == nil) != (want == nil) {
			t.Errorf("index(%s) = %#v, want %#v", when, got, want)
		}
	}
}

// TestIndexAgreesWithLinearScan checks on random rules and requests that deciding through the
// context index gives the same rule as trying every rule in order.
func TestIndexAgreesWithLinearScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	contexts := []string{"a", "b", "c", "d", ""}
	conds := []string{
		`context == "%s"`,
		`context == "%s" && metadata.n > 5`,
		`"%s" == context || metadata.n == 3`,
		`context in ["%s", "b"]`,
		`metadata.n % 4 == 1`,
		`context == "%s" && user.id + "" == "x"`,
	}
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range 300 {
		cond := conds[rng.IntN(len(conds))]
		cond = strings.ReplaceAll(cond, "%s", contexts[rng.IntN(len(contexts))])
		fmt.Fprintf(&b, "  - {name: r%d, when: '%s', persona: p, priority: %d}\n", i, cond, rng.IntN(3))
	}
	s := mustSet(t, b.String())
	// The linear scan evaluates every rule's whole expression, compiled apart.
	whole := expression.NewCompiler()
	programs := make(map[*Rule]*vm.Program)
	for _, r := range s.Rules() {
		p, err := whole.Compile(r.When)
		if err != nil {
			t.Fatal(err)
		}
		programs[r] = p
	}
	wholeLayout := whole.Layout()
	for range 2000 {
		in := expression.Input{
			Context:  contexts[rng.IntN(len(contexts))] + []string{"", "", "z"}[rng.IntN(3)],
			Metadata: map[string]any{"n": float64(rng.IntN(10))},
		}
		if rng.IntN(2) == 0 {
			in.User = map[string]any{"id": "x"}
		}
		got := decide(s, in, false).Rule
		var want *Rule
		ev := expression.Acquire(in, wholeLayout)
		for _, r := range s.Rules() {
			if out, _ := ev.Eval(programs[r]); out == true {
				want = r
				break
			}
		}
		ev.Release()
		if got != want {
			t.Fatalf("%+v: index decided %v, linear scan %v", in, got, want)
		}
	}
}
