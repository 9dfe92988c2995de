package expression

import (
	"errors"
	"fmt"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// The attacks that took the service down before expressions had a cost bound: each is
// refused when it loads, with the reason.
func TestAttacksAreRefusedAtLoad(t *testing.T) {
	long := strings.Repeat("x", 255)
	for _, tc := range []struct{ src, want string }{
		{`context == "mem4g" && len(reduce(1..31, #acc + #acc, "x")) > 0`, "builds a larger accumulator with every iteration"},
		{`repeat("` + long + `", 1000000) != ""`, "can build 244 MiB in one evaluation, over the budget of 1 MiB"},
		{`let r = 1..400; sum(r, sum(r, sum(r, 1))) > 0`, "`sum(r, sum(r, 1))` can build 10126 KiB in one evaluation, over the budget of 1 MiB"},
		{`any(1..5000, metadata.a contains metadata.b)`, "steps in one evaluation, over the budget of 100000"},
		{`reduce(1..27, #acc + #acc, "x")`, "builds a larger accumulator with every iteration"},
		{`len(1..100000) > 0`, "the range `1..100000` has 100000 items, more than 10000"},
		{`len(1..len(metadata.tags)) > 0`, "must have constant bounds"},
		{`repeat("x", metadata.n) != ""`, "repeat's count must be a constant number"},
		{`toJSON(metadata) != ""`, "toJSON() is not available"},
		{`len(groupBy(metadata.tags, #)) > 0`, "groupBy() is not available"},
		{`len(join(map(1..1000, metadata.name), ",")) > 0`, "over the budget of 1 MiB"},
		{`sum(1..10000, sum(1..100, 1)) > 0`, "over the budget of 1 MiB"},
	} {
		_, err := NewCompiler().Compile(tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\n got  %v\n want an error containing %q", tc.src, err, tc.want)
		}
	}
}

// What authors really write stays within budget.
func TestEverydayExpressionsAreAccepted(t *testing.T) {
	for _, src := range []string{
		`context == "sales" && metadata.region == "EU"`,
		`metadata.tier in ["pro", "enterprise"]`,
		`bucket(user.id + ":sales-v2") < 20`,
		`(metadata.tier ?? "free") != "free" && user?.email endsWith "@example.com"`,
		`any(metadata.tags, # == "vip") || all(metadata.products, # startsWith "pro-")`,
		`len(filter(metadata.tags, # contains "beta")) > 2`,
		`upper(trim(metadata.name ?? "")) + "!"`,
		`join(metadata.tags, ", ")`,
		`lower(metadata.region) matches "^(eu|uk)"`,
		`count(metadata.items, .price > 100) >= 1`,
		`any(user.groups, # in ["admins", "support"])`,
		`repeat("-", 20)`,
		`reduce(1..10, #acc + #, 0)`,
		`string(metadata.seats ?? 0) + " seats"`,
	} {
		if _, err := NewCompiler().Compile(src); err != nil {
			t.Errorf("%s: %v", src, err)
		}
	}
}

// Run without the estimate, the attacks are stopped by the run-time guards: quickly, and
// without building what they ask for.
func TestRunTimeGuardsStopWhatTheEstimateWouldRefuse(t *testing.T) {
	long := strings.Repeat("x", 255)
	for _, src := range []string{
		`len(reduce(1..31, #acc + #acc, "x")) > 0`,
		`repeat("` + long + `", 1000000) != ""`,
		`let r = 1..400; sum(r, sum(r, sum(r, 1))) > 0`,
		`len(join(map(1..1000, repeat("y", 2000)), ",")) > 0`,
		`len(replace(repeat("a", 1000), "", repeat("b", 2000))) > 0`,
	} {
		vars := variables(mustParse(t, src))
		p, _, err := build(src, vars, false)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		ev := Acquire(Input{}, &Layout{vars: vars})
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err = ev.Eval(p)
		runtime.ReadMemStats(&after)
		steps := ev.meter.steps
		ev.Release()
		if !errors.Is(err, ErrBudget) {
			t.Errorf("%s: %v, want %v", src, err, ErrBudget)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
			t.Errorf("%s allocated %d bytes before it was stopped, want under 8 MiB", src, alloc)
		}
		if steps > MaxCost+1000 {
			t.Errorf("%s ran %d steps, want it stopped soon after %d", src, steps, MaxCost)
		}
	}
}

// An accepted expression never goes over its estimate, whatever the request holds within the
// bounds: the meter's steps and bytes, and what the evaluation really allocates, stay within
// the estimated cost.
func FuzzEstimateBoundsEvaluation(f *testing.F) {
	for i := range 40 {
		f.Add(uint64(i), uint64(i*7+3))
	}
	f.Fuzz(func(t *testing.T, exprSeed, inputSeed uint64) {
		g := gen{r: rand.New(rand.NewPCG(exprSeed, 1))}
		src := g.boolExpr(3)
		p, vars, err := compile(src, true)
		if err != nil {
			return // refused at load: nothing to check
		}
		_, cost, _ := build(src, vars, true)
		in := randomInput(rand.New(rand.NewPCG(inputSeed, 2)))
		ev := Acquire(in, &Layout{vars: vars, mac: testMAC})
		defer ev.Release()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err = ev.Eval(p)
		runtime.ReadMemStats(&after)
		if errors.Is(err, ErrBudget) {
			t.Fatalf("%s: accepted with cost %+v, but stopped by a guard: %v", src, cost, err)
		}
		if ev.meter.steps > cost.Steps || ev.meter.bytes > cost.Memory {
			t.Fatalf("%s: estimated %+v, ran %d steps building %d bytes", src, cost, ev.meter.steps, ev.meter.bytes)
		}
		// The virtual machine's own stack and scopes come on top of what the estimate counts.
		if alloc := int64(after.TotalAlloc - before.TotalAlloc); alloc > 2*cost.Memory+256<<10 {
			t.Fatalf("%s: estimated %d bytes, allocated %d", src, cost.Memory, alloc)
		}
	})
}

func mustParse(t *testing.T, src string) ast.Node {
	t.Helper()
	tree, err := parser.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	return tree.Node
}

// gen writes random expressions over the request from the functions authors use.
type gen struct{ r *rand.Rand }

func (g gen) pick(options ...string) string { return options[g.r.IntN(len(options))] }

func (g gen) str(depth int) string {
	if depth <= 0 {
		return g.pick(`context`, `"abc"`, `(metadata.name ?? "")`, `(user.id ?? "")`, `"x"`)
	}
	d := depth - 1
	switch g.r.IntN(10) {
	case 0:
		return g.str(d) + " + " + g.str(d)
	case 1:
		return fmt.Sprintf("repeat(%s, %d)", g.str(d), g.r.IntN(50))
	case 2:
		return fmt.Sprintf("upper(%s)", g.str(d))
	case 3:
		return fmt.Sprintf("join(%s, %s)", g.list(d), g.str(d))
	case 4:
		return fmt.Sprintf("replace(%s, %s, %s)", g.str(d), g.pick(`"a"`, `""`, `"x"`), g.str(d))
	case 5:
		return fmt.Sprintf("reduce(%s, #acc + %s, %s)", g.list(d), g.pick(`#`, `"y"`, `#acc`), g.str(d))
	case 6:
		return fmt.Sprintf("string(%s)", g.pick(`metadata.tags`, `metadata`, `user`, `len(context)`))
	case 7:
		return fmt.Sprintf("(%s ? %s : %s)", g.boolExpr(d), g.str(d), g.str(d))
	case 8:
		if g.r.IntN(2) == 0 {
			return fmt.Sprintf("sign(%s)", g.str(d))
		}
		return fmt.Sprintf("sign(%s, %d)", g.str(d), 1+g.r.IntN(maxTTL))
	}
	return fmt.Sprintf("trim(%s)", g.str(d))
}

func (g gen) list(depth int) string {
	if depth <= 0 {
		return g.pick(`(metadata.tags ?? [])`, `1..5`, `["a", "b"]`, `(user.groups ?? [])`, fmt.Sprintf("1..%d", g.r.IntN(3000)))
	}
	d := depth - 1
	switch g.r.IntN(5) {
	case 0:
		return fmt.Sprintf("map(%s, %s)", g.list(d), g.str(d))
	case 1:
		return fmt.Sprintf("filter(%s, %s)", g.list(d), g.boolExpr(d))
	case 2:
		return fmt.Sprintf("split(%s, %s)", g.str(d), g.pick(`","`, `""`))
	}
	return g.list(0)
}

func (g gen) boolExpr(depth int) string {
	if depth <= 0 {
		return g.pick(`context == "sales"`, `metadata.tier == "pro"`, `true`, `bucket(user.id ?? "") < 50`)
	}
	d := depth - 1
	switch g.r.IntN(7) {
	case 0:
		return fmt.Sprintf("any(%s, %s)", g.list(d), g.boolExpr(d))
	case 1:
		return fmt.Sprintf("all(%s, %s)", g.list(d), g.boolExpr(d))
	case 2:
		return fmt.Sprintf("len(%s) > %d", g.str(d), g.r.IntN(100))
	case 3:
		return fmt.Sprintf("%s contains %s", g.str(d), g.str(d))
	case 4:
		return fmt.Sprintf("count(%s, %s) > 1", g.list(d), g.boolExpr(d))
	case 5:
		return g.boolExpr(d) + " && " + g.boolExpr(d)
	}
	return fmt.Sprintf("%s in %s", g.str(d), g.list(d))
}

// randomInput fills a request up to the bounds the server enforces, often to the brim: the
// bounds of each value, and of metadata and the user's claims as a whole.
func randomInput(r *rand.Rand) Input {
	s := func() string {
		n := r.IntN(ValueBytes + 1)
		if r.IntN(3) == 0 {
			n = ValueBytes
		}
		return strings.Repeat("ab,", n/3+1)[:n]
	}
	// list holds at most total bytes of strings.
	list := func(total int) []any {
		out := make([]any, 0, ValueItems)
		for range r.IntN(ValueItems + 1) {
			item := s()
			if total -= len(item); total < 0 {
				break
			}
			out = append(out, item)
		}
		return out
	}
	name, tier, id := s(), s(), s()
	return Input{
		Context:  strings.Repeat("c", r.IntN(ContextBytes+1)),
		Metadata: map[string]any{"name": name, "tier": tier, "tags": list(MetadataBytes - len(name) - len(tier))},
		User:     map[string]any{"id": id, "groups": list(ClaimsBytes - len(id))},
	}
}

// Expressions near the budget, on requests filled to the bounds: what one evaluation can cost
// at worst (the limits in docs/operations.md quote these figures).
func BenchmarkNearBudget(b *testing.B) {
	full := strings.Repeat("ab", ValueBytes/2)
	tags := make([]any, ValueItems)
	for i := range tags {
		tags[i] = full
	}
	in := Input{Context: strings.Repeat("c", ContextBytes), Metadata: map[string]any{"a": full, "b": full[:512], "tags": tags}}
	for _, src := range []string{
		`any(1..2400, metadata.b contains metadata.a)`,
		`len(reduce(1..30, #acc + metadata.b, "")) > 0`,
		`any(metadata.tags, any(1..150, # < 0))`,
		`count(1..7000, # % 7 == 0) > 0`,
	} {
		p, vars, err := compile(src, false)
		if err != nil {
			b.Fatalf("%s: %v", src, err)
		}
		_, cost, _ := build(src, vars, true)
		b.Run(fmt.Sprintf("%.20s/steps=%d/mem=%d", src, cost.Steps, cost.Memory), func(b *testing.B) {
			b.ReportAllocs()
			ev := Acquire(in, &Layout{vars: vars})
			defer ev.Release()
			for b.Loop() {
				if _, err := ev.Eval(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
