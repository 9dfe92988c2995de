package source

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseLimits(t *testing.T) {
	// Thirty levels of two aliases each expand to 2^30 nodes: measuring must not expand them.
	var deep strings.Builder
	deep.WriteString("a0: &a0 [x, x]\n")
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&deep, "a%d: &a%d [*a%d, *a%d]\n", i, i, i-1, i-1)
	}
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"nodes without aliases", "[" + strings.Repeat("1, ", MaxNodes) + "1]",
			[]string{"f.yaml:1:299999: too large (100001 nodes, limit 100000)"}},
		{"nodes at the limit", "[" + strings.Repeat("1, ", MaxNodes-2) + "1]", nil},
		// Level i holds 2^(i+2)-1 nodes: the second alias of a14 takes the file from 98,302 nodes
		// to 131,069.
		{"nested aliases", deep.String(),
			[]string{"f.yaml:15:18: too large after expanding aliases (131069 nodes, limit 100000)"}},
		{"alias inside its anchor", "a: &a [1, *a]\n",
			[]string{"f.yaml:1:11: alias *a is used inside its own anchor &a, which makes the value endless"}},
		{"alias inside its anchor, deeper", "a: &a {b: [{c: *a}]}\n",
			[]string{"f.yaml:1:16: alias *a is used inside its own anchor &a, which makes the value endless"}},
		{"merge key", "a: &a {x: " + strings.Repeat("y", 1<<20) + "}\nb: [" + strings.Repeat("{<<: *a}, ", 8) + "]\n",
			[]string{
				"f.yaml:1:11: value is too long (1048576 bytes, limit 32768 bytes = 32 KiB)",
				"f.yaml:2:70: too large after expanding aliases (8388632 bytes of text, limit 8388608)",
			}},
		{"long value", "k: " + strings.Repeat("v", MaxStringBytes+1) + "\n",
			[]string{"f.yaml:1:4: value is too long (32769 bytes, limit 32768 bytes = 32 KiB)"}},
		{"long key", "? " + strings.Repeat("k", MaxStringBytes+1) + "\n: v\n",
			[]string{"f.yaml:1:3: value is too long (32769 bytes, limit 32768 bytes = 32 KiB)"}},
		{"every long value", "a: " + strings.Repeat("v", MaxStringBytes+1) + "\nb: " + strings.Repeat("v", MaxStringBytes+2) + "\n",
			[]string{
				"f.yaml:1:4: value is too long (32769 bytes, limit 32768 bytes = 32 KiB)",
				"f.yaml:2:4: value is too long (32770 bytes, limit 32768 bytes = 32 KiB)",
			}},
		{"value at the limit", "k: " + strings.Repeat("v", MaxStringBytes) + "\n", nil},
		{"aliases within the limits", "a: &a [1, 2, 3]\nb: [*a, *a, *a]\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, errs := Parse("f.yaml", []byte(tc.yaml))
			if got := errs.Strings(); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if (root == nil) != (len(tc.want) > 0) {
				t.Errorf("root = %v with %d errors; want a tree exactly when there is no error", root, len(errs))
			}
		})
	}
}

func TestCap(t *testing.T) {
	var errs Errors
	for i := range MaxErrors + 5 {
		errs.Addf(Pos{Path: "rules/a.yaml", Line: i + 1, Col: 1}, "wrong")
	}
	got := errs.Cap()
	if len(got) != MaxErrors+1 {
		t.Fatalf("Cap kept %d errors, want %d and a last one about the rest", len(got), MaxErrors+1)
	}
	if want := "rules:1:1: too many errors: only the first 1000 are listed; fix them and load again to see the rest"; got[MaxErrors].Error() != want {
		t.Errorf("last error = %s, want %s", got[MaxErrors], want)
	}
	if short := errs[:3].Cap(); len(short) != 3 {
		t.Errorf("Cap changed a short list to %d errors", len(short))
	}
}
