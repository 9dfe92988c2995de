package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/persona-router/persona-router/internal/expression"
)

// rolloutFiles is a configuration with a 20% rollout for context sales.
var rolloutFiles = map[string]string{
	"personas/default.yaml": defaultPersona,
	"personas/sales.yaml":   strings.Replace(defaultPersona, "Cara for", "Sales for", 1),
	"rules/sales.yaml": `rules:
  - {name: v2, when: 'context == "sales" && bucket(user.id + ":v2") < 20', persona: sales}
  - {name: sales, when: 'context == "sales" && metadata.region == "EU"', persona: sales}
`,
}

func TestSplitCommand(t *testing.T) {
	t.Parallel()
	dirs := writeConfig(t, rolloutFiles)
	count := func(id func(i int) string, n int) int {
		in := 0
		for i := range n {
			if expression.Bucket(id(i)+":v2") < 20 {
				in++
			}
		}
		return in
	}
	v2 := count(func(i int) string { return fmt.Sprintf("u-%d", i) }, 2000)
	cust := count(func(i int) string { return fmt.Sprintf("cust-%d", i) }, 2000)
	row := func(rule, persona string, n int, rest string) string {
		return fmt.Sprintf("%s %s %d %.1f%% %s", rule, persona, n, float64(n)/20, rest)
	}
	for _, tc := range []struct {
		name string
		args []string
		// lines are lines stdout must have.
		lines []string
	}{
		{"default users", []string{"--context", "sales", "--users", "2000"}, []string{
			`2000 users, context "sales", metadata {} (configuration …`,
			row("v2", "sales", v2, fmt.Sprintf(`bucket(user.id + ":v2") < 20 admits 20%% of bucket values; got %.1f%% of those reaching it (2000)`, float64(v2)/20)),
			row("sales", "sales", 0, ""),
			row("(default)", "default", 2000-v2, ""),
			"no overlay rule applies to this context",
		}},
		{"metadata", []string{"--context", "sales", "--users", "2000", "--metadata", `{"region": "EU"}`}, []string{
			row("sales", "sales", 2000-v2, ""),
			row("(default)", "default", 0, ""),
		}},
		{"user key", []string{"--context", "sales", "--users", "2000", "--user-key", `"cust-" + string(i)`}, []string{
			row("v2", "sales", cust, fmt.Sprintf(`bucket(user.id + ":v2") < 20 admits 20%% of bucket values; got %.1f%% of those reaching it (2000)`, float64(cust)/20)),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := runCLI(t, append(append([]string{"split"}, tc.args...), dirs...)...)
			if err != nil {
				t.Fatalf("split: %v\n%s", err, stderr)
			}
			// Columns are compared as words: their widths follow their contents.
			words := func(s string) string { return strings.Join(strings.Fields(s), " ") }
			var got []string
			for _, l := range strings.Split(stdout, "\n") {
				got = append(got, words(l))
			}
			for _, line := range tc.lines {
				// A line ending in "…" is a prefix (the configuration version follows).
				match := func(l string) bool { return l == words(line) }
				if prefix, ok := strings.CutSuffix(line, "…"); ok {
					match = func(l string) bool { return strings.HasPrefix(l, words(prefix)) }
				}
				if !slices.ContainsFunc(got, match) {
					t.Errorf("no line %q in\n%s", line, stdout)
				}
			}
		})
	}

	stdout, stderr, err := runCLI(t, append([]string{"split", "--context", "sales", "--users", "2000", "--format", "json"}, dirs...)...)
	if err != nil {
		t.Fatalf("split --format json: %v\n%s", err, stderr)
	}
	var sp struct {
		Users int
		Rules []struct {
			Rule    *string
			Users   int
			Buckets []struct{ Condition string }
		}
		Personas []struct {
			Persona string
			Users   int
		}
		Overlays []any
	}
	if err := json.Unmarshal([]byte(stdout), &sp); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	if sp.Users != 2000 || len(sp.Rules) != 3 || *sp.Rules[0].Rule != "v2" || sp.Rules[0].Users != v2 || sp.Rules[2].Rule != nil ||
		sp.Rules[0].Buckets[0].Condition != `bucket(user.id + ":v2") < 20` || sp.Personas[0].Persona != "default" || sp.Overlays == nil {
		t.Errorf("split --format json:\n%s", stdout)
	}
	if !strings.Contains(stdout, `"condition": "bucket(user.id + \":v2\") < 20"`) {
		t.Errorf("conditions are escaped for HTML:\n%s", stdout)
	}
}

func TestSplitCommandErrors(t *testing.T) {
	t.Parallel()
	dirs := writeConfig(t, rolloutFiles)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--users", "0"}, "users must be from 1 to 100000, got 0"},
		{[]string{"--context", "a b"}, "(invalid_request): context must be"},
		{[]string{"--metadata", "[1]"}, "--metadata must be a JSON object"},
		{[]string{"--user-key", `repeat("x", i)`}, "--user-key: the user key may use only i"},
		{[]string{"--user-key", `string(i % 3)`}, `the user key gives "0" for both user 0 and user 3`},
		{[]string{"--format", "yaml"}, `--format must be text or json, got "yaml"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			stdout, stderr, err := runCLI(t, append(append([]string{"split"}, tc.args...), dirs...)...)
			if err == nil || !strings.Contains(stderr, tc.want) || stdout != "" {
				t.Errorf("err %v, stdout %q, stderr %q, want %q", err, stdout, stderr, tc.want)
			}
		})
	}
}
