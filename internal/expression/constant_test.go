package expression_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/persona-router/persona-router/internal/expression"
)

// A program is constant when it reads nothing of the request, directly or through a let, and
// calls neither now() nor sign().
func TestConstant(t *testing.T) {
	c := expression.NewCompiler(expression.WithSigningSecret([]byte(strings.Repeat("k", expression.MinSigningSecret))))
	for _, tc := range []struct {
		src  string
		want bool
	}{
		{`'x' + 'y'`, true},
		{`1 + 2`, true},
		{`bucket("a")`, true},
		{`upper("x")`, true},
		{`date("2026-01-02") < date("2027-01-01")`, true},
		{`"a" in ["a", "b"]`, true},
		{`let x = "a"; x + x`, true},
		{`map(1..3, # * 2)`, true},
		{`reduce(["a", "b"], #acc + #, "")`, true},
		{`repeat("-", 3) + join(["a", "b"], ",")`, true},
		// The optimizer drops the read that can never run: the program is what is decided on.
		{`true || context == "a"`, true},
		{`context`, false},
		{`metadata.tier`, false},
		{`metadata["tier"]`, false},
		{`user?.id`, false},
		{`len(metadata)`, false},
		{`now()`, false},
		{`now() > date("2020-01-01")`, false},
		{`sign("https://x")`, false},
		{`"https://x" | sign(60)`, false},
		{`let m = metadata; m.a`, false},
		{`let u = user; "x"`, false},
		{`bucket(context)`, false},
		{`map(1..3, context)`, false},
		{`"x" + (metadata.a ?? "y")`, false},
	} {
		p, err := c.Compile(tc.src)
		if err != nil {
			t.Fatalf("Compile(%s): %v", tc.src, err)
		}
		if got := expression.Constant(p); got != tc.want {
			t.Errorf("Constant(%s) = %v, want %v", tc.src, got, tc.want)
		}
	}
}

// A constant program is evaluated once, at load, within the same budget as any evaluation; a
// program that reads the request is refused.
func TestEvalConstant(t *testing.T) {
	c := expression.NewCompiler()
	for src, want := range map[string]any{
		`'x' + 'y'`:                 "xy",
		`1 + 2`:                     3,
		`bucket("hello")`:           51,
		`upper("x") + string(1.5)`:  "X1.5",
		`let s = "ab"; s + s + "!"`: "abab!",
	} {
		p, err := c.Compile(src)
		if err != nil {
			t.Fatalf("Compile(%s): %v", src, err)
		}
		if got, err := expression.EvalConstant(p); err != nil || got != want {
			t.Errorf("EvalConstant(%s) = %v, %v; want %v", src, got, err, want)
		}
	}
	for _, src := range []string{`context`, `metadata.tier ?? "free"`, `string(now())`} {
		p, err := c.Compile(src)
		if err != nil {
			t.Fatalf("Compile(%s): %v", src, err)
		}
		if got, err := expression.EvalConstant(p); !errors.Is(err, expression.ErrNotConstant) {
			t.Errorf("EvalConstant(%s) = %v, %v; want %v", src, got, err, expression.ErrNotConstant)
		}
	}
	// Run-time failures are errors, as in any evaluation.
	p, err := c.Compile(`[1, 2][5] + 1`)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := expression.EvalConstant(p); err == nil {
		t.Errorf("EvalConstant([1, 2][5] + 1) = %v, want an error", got)
	}
}
