package expression_test

import (
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/persona-router/persona-router/internal/expression"
)

// The bucket of a key must never change: rollouts depend on users staying in their bucket
// across processes, machines, restarts and releases. These are MurmurHash3 x86 32-bit values
// (seed 0) modulo 100, e.g. murmur3("hello") = 613153351.
func TestBucketIsStable(t *testing.T) {
	for key, want := range map[string]int{
		"":                0,
		"hello":           51,
		"u-1001:sales-v2": 60,
		"u-1002:sales-v2": 16,
		"u-1007":          8,
	} {
		if got := expression.Bucket(key); got != want {
			t.Errorf("Bucket(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestBucketSpreadsEvenly(t *testing.T) {
	var counts [100]int
	const n = 100_000
	for i := range n {
		counts[expression.Bucket("user-"+strconv.Itoa(i))]++
	}
	for b, c := range counts {
		if c < n/100*8/10 || c > n/100*12/10 {
			t.Errorf("bucket %d got %d of %d keys, want about %d", b, c, n, n/100)
		}
	}
}

func eval(t *testing.T, src string, in expression.Input) (any, error) {
	t.Helper()
	c := expression.NewCompiler()
	p, err := c.Compile(src)
	if err != nil {
		t.Fatalf("Compile(%q): %v", src, err)
	}
	ev := expression.Acquire(in, c.Layout())
	defer ev.Release()
	return ev.Eval(p)
}

func TestEvalSeesTheRequest(t *testing.T) {
	in := expression.Input{
		Context:  "sales",
		Metadata: map[string]any{"tier": "pro", "seats": 12.0},
		User:     map[string]any{"id": "u-1002"},
	}
	for src, want := range map[string]any{
		`context`:                         "sales",
		`metadata.tier`:                   "pro",
		`metadata.seats > 10`:             true,
		`metadata.missing`:                nil,
		`user.id`:                         "u-1002",
		`bucket(user.id + ":sales-v2")`:   16,
		`metadata?.nested?.deep ?? "n/a"`: "n/a",
	} {
		got, err := eval(t, src, in)
		if err != nil || got != want {
			t.Errorf("%s = %v, %v; want %v", src, got, err, want)
		}
	}
}

func TestAbsentMetadataAndUserAreEmpty(t *testing.T) {
	got, err := eval(t, `len(metadata) + len(user)`, expression.Input{})
	if err != nil || got != 0 {
		t.Fatalf("got %v, %v; want 0", got, err)
	}
}

func TestRunTimeErrorsAreErrors(t *testing.T) {
	for src, want := range map[string]string{
		`user.id + ":x"`:        "invalid operation",
		`bucket(user.id) < 20`:  "bucket: the key must be a string",
		`metadata.missing.deep`: "cannot fetch deep",
	} {
		if got, err := eval(t, src, expression.Input{Metadata: map[string]any{"list": "not a list"}}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s = %v, %v; want an error containing %q", src, got, err, want)
		}
	}
}

func TestCompileRejectsUnknownNamesAndHugeExpressions(t *testing.T) {
	if _, err := expression.NewCompiler().Compile(`contxt == "sales"`); err == nil || !strings.Contains(err.Error(), "unknown name contxt") {
		t.Errorf("misspelt variable: %v", err)
	}
	huge := strings.Repeat(`context == "x" || `, 2000) + "true"
	if _, err := expression.NewCompiler().Compile(huge); err == nil {
		t.Errorf("an expression of %d nodes compiled, want the node limit to refuse it", 4*2000)
	}
}

func TestEvaluatorsAreIndependentAcrossGoroutines(t *testing.T) {
	c := expression.NewCompiler()
	p, err := c.Compile(`context + ":" + string(metadata.n)`)
	if err != nil {
		t.Fatal(err)
	}
	layout := c.Layout()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				ctx := "c" + strconv.Itoa(g)
				ev := expression.Acquire(expression.Input{Context: ctx, Metadata: map[string]any{"n": i}}, layout)
				got, err := ev.Eval(p)
				ev.Release()
				if want := ctx + ":" + strconv.Itoa(i); err != nil || got != want {
					t.Errorf("got %v, %v; want %s", got, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// Evaluators are pooled and their environment is overwritten, not cleared, per request: a
// value one request had must never be seen by the next, which lacks it.
func TestNoValueLeaksBetweenRequests(t *testing.T) {
	c := expression.NewCompiler()
	p, err := c.Compile(`(metadata.tier ?? "none") + "/" + (user?.id ?? "anon") + "/" + context`)
	if err != nil {
		t.Fatal(err)
	}
	layout := c.Layout()
	full := expression.Input{Context: "sales", Metadata: map[string]any{"tier": "pro"}, User: map[string]any{"id": "u1"}}
	for i := range 200 {
		in, want := full, "pro/u1/sales"
		if i%2 == 1 {
			in, want = expression.Input{}, "none/anon/"
		}
		ev := expression.Acquire(in, layout)
		got, err := ev.Eval(p)
		ev.Release()
		if err != nil || got != want {
			t.Fatalf("request %d: %v, %v; want %q", i, got, err, want)
		}
	}
}

// Flattening member reads relies on metadata and user never being shadowed.
func TestPartsOfTheRequestCannotBeShadowed(t *testing.T) {
	for _, src := range []string{`let metadata = {"tier": "x"}; metadata.tier`, `let user = 1; user`, `let context = "x"; context`} {
		if _, err := expression.NewCompiler().Compile(src); err == nil || !strings.Contains(err.Error(), "cannot redeclare") {
			t.Errorf("%s: %v, want a redeclaration error", src, err)
		}
	}
}

// One request's share of the hot path for a typical rule: acquire an evaluator, evaluate,
// release. Work added for sign() must not show up here for programs that do not call it.
func BenchmarkRequest(b *testing.B) {
	c := expression.NewCompiler()
	p, err := c.Compile(`context == "sales" && metadata.tier in ["pro", "enterprise"] && bucket(user.id + ":sales-v2") < 50`)
	if err != nil {
		b.Fatal(err)
	}
	layout := c.Layout()
	in := expression.Input{Context: "sales", Metadata: map[string]any{"tier": "pro"}, User: map[string]any{"id": "u-1002"}}
	b.ReportAllocs()
	for b.Loop() {
		ev := expression.Acquire(in, layout)
		if _, err := ev.Eval(p); err != nil {
			b.Fatal(err)
		}
		ev.Release()
	}
}

// $env would read the pooled environment beyond what the layout fills in: values an earlier
// request left there, and the guards' state. It is refused wherever it appears.
func TestEnvIsRefused(t *testing.T) {
	for _, src := range []string{`$env.context`, `$env["user"]`, `string($env)`, `keys($env)`, `$env["meter."]`, `len(metadata) > 0 && $env?.user != nil`} {
		if _, err := expression.NewCompiler().Compile(src); err == nil || !strings.Contains(err.Error(), "$env is not available") {
			t.Errorf("%s: %v, want $env refused", src, err)
		}
	}
}

// Compile errors say what was most likely meant.
func TestCompileHints(t *testing.T) {
	for src, want := range map[string]string{
		`contxt == "sales"`:          `unknown name contxt, did you mean "context"? (1:1)`,
		`metdata.tier == "x"`:        `unknown name metdata, did you mean "metadata"? (1:1)`,
		`lenn(context) > 1`:          `unknown name lenn, did you mean "len"? (1:1)`,
		`context = "sales"`:          `= is not a comparison: compare with == (like context == "sales") (1:9)`,
		`context == "a" AND true`:    `AND is not an operator: write and (lower case), or && (1:16)`,
		`frobnicate(context)`:        `unknown name frobnicate (1:1)`,
		`context == "sales' && true`: `a string opened here is never closed (the quotes around it do not match) (1:12)`,
	} {
		_, err := expression.NewCompiler().Compile(src)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: %v, want %s", src, err, want)
		}
	}
}
