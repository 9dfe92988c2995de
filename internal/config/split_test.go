package config_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/expression"
)

const splitPersona = "name: %s\navatarId: 30fa96d0-26c4-4e55-94a0-517025942e18\nvoiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b\n"

// rolloutConfig has, for context sales, a 30% test (v3) tried before a 20% test (v2) with
// another key, the standard rule, and a French overlay; and one context per way of writing a
// bucket comparison.
func rolloutConfig(t *testing.T) *config.Snapshot {
	t.Helper()
	root := t.TempDir()
	for _, p := range []string{"default", "a", "b"} {
		write(t, root, "personas/"+p+".yaml", fmt.Sprintf(splitPersona, p))
	}
	write(t, root, "rules/sales.yaml", `metadata:
  locale: {type: string}
rules:
  - {name: v3, when: 'context == "sales" && bucket(user.id + ":v3") < 30', persona: b, priority: 20}
  - {name: v2, when: 'context == "sales" && 20 > bucket(user.id + ":v2")', persona: a, priority: 10}
  - {name: sales, when: 'context == "sales" && user.id >= "u-2"', persona: a}
  - {name: french, overlay: true, when: 'metadata.locale == "fr" && bucket(user.id) < 50', set: {languageCode: fr}}
  - {name: le, when: 'context == "c-le" && bucket(user.id) <= 20', persona: a}
  - {name: gt, when: 'context == "c-gt" && bucket(user.id) > 89', persona: a}
  - {name: ge, when: 'context == "c-ge" && 90 <= bucket(user.id)', persona: a}
  - {name: float, when: 'context == "c-float" && bucket(user.id) < 2.5', persona: a}
  - {name: or, when: 'context == "c-or" && (bucket(user.id) < 20 || user.vip == true)', persona: a}
`)
	snap, err := config.Load(dirsIn(root))
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func TestSplitShares(t *testing.T) {
	snap := rolloutConfig(t)
	const users = 10_000
	// What the split must find, counted here from the hash itself.
	var v3, v2, sales, def, french int
	for i := range users {
		id := fmt.Sprintf("u-%d", i)
		switch {
		case expression.Bucket(id+":v3") < 30:
			v3++
		case expression.Bucket(id+":v2") < 20:
			v2++
		case id >= "u-2":
			sales++
		default:
			def++
		}
		if expression.Bucket(id) < 50 {
			french++
		}
	}
	sp, err := snap.Split(context.Background(), config.SplitInput{Context: "sales", Metadata: map[string]any{"locale": "fr"}, Users: users})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		rule             string
		persona          string
		users, reached   int
		nominal          float64
		condition, share string
	}
	want := []row{
		{"v3", "b", v3, users, 30, `bucket(user.id + ":v3") < 30`, fmt.Sprint(float64(v3*100) / users)},
		{"v2", "a", v2, users - v3, 20, `20 > bucket(user.id + ":v2")`, fmt.Sprint(float64(v2*100) / users)},
		{"sales", "a", sales, users - v3 - v2, 0, "", fmt.Sprint(float64(sales*100) / users)},
		{"(default)", "default", def, def, 0, "", fmt.Sprint(float64(def*100) / users)},
	}
	if len(sp.Rules) != len(want) {
		t.Fatalf("rules: %+v", sp.Rules)
	}
	for i, w := range want {
		got := sp.Rules[i]
		name := "(default)"
		if got.Rule != nil {
			name = *got.Rule
		}
		if name != w.rule || got.Persona != w.persona || got.Users != w.users || got.Reached != w.reached || fmt.Sprint(got.Share) != w.share {
			t.Errorf("rule %d = %s %s users %d reached %d share %v, want %+v", i, name, got.Persona, got.Users, got.Reached, got.Share, w)
		}
		if w.condition == "" {
			if len(got.Buckets) != 0 {
				t.Errorf("%s: buckets %+v, want none", name, got.Buckets)
			}
			continue
		}
		if len(got.Buckets) != 1 || got.Buckets[0].Condition != w.condition || got.Buckets[0].Nominal != w.nominal {
			t.Errorf("%s: buckets %+v, want %s (%g%%)", name, got.Buckets, w.condition, w.nominal)
		}
	}
	// The rollout tried second gets about 20% of the 70% the first leaves: 14%.
	if v2 < 1300 || v2 > 1500 {
		t.Errorf("v2 got %d users: the overlap is not the one this test is about", v2)
	}
	if len(sp.Overlays) != 1 || *sp.Overlays[0].Rule != "french" || sp.Overlays[0].Users != french || sp.Overlays[0].Reached != users || sp.Overlays[0].Buckets[0].Nominal != 50 {
		t.Errorf("overlays = %+v, want french for %d of %d", sp.Overlays, french, users)
	}
	wantPersonas := map[string]int{"a": v2 + sales, "b": v3, "default": def}
	if len(sp.Personas) != len(wantPersonas) || sp.Personas[0].Persona != "a" {
		t.Errorf("personas = %+v, want %v, most first", sp.Personas, wantPersonas)
	}
	for _, p := range sp.Personas {
		if p.Users != wantPersonas[p.Persona] {
			t.Errorf("persona %s: %d users, want %d", p.Persona, p.Users, wantPersonas[p.Persona])
		}
	}
}

// Every way of writing a bucket comparison is read as the percentage it admits; one under ||
// is not a rollout of the rule.
func TestSplitBucketConditions(t *testing.T) {
	snap := rolloutConfig(t)
	for _, tc := range []struct {
		context   string
		condition string
		nominal   float64
	}{
		{"c-le", "bucket(user.id) <= 20", 21},
		{"c-gt", "bucket(user.id) > 89", 10},
		{"c-ge", "90 <= bucket(user.id)", 10},
		{"c-float", "bucket(user.id) < 2.5", 3},
		{"c-or", "", 0},
	} {
		t.Run(tc.context, func(t *testing.T) {
			sp, err := snap.Split(context.Background(), config.SplitInput{Context: tc.context, Users: 1000})
			if err != nil {
				t.Fatal(err)
			}
			b := sp.Rules[0].Buckets
			if tc.condition == "" {
				if len(b) != 0 {
					t.Errorf("buckets = %+v, want none", b)
				}
				return
			}
			if len(b) != 1 || b[0].Condition != tc.condition || b[0].Key != "user.id" || b[0].Nominal != tc.nominal {
				t.Errorf("buckets = %+v, want %s → %g%%", b, tc.condition, tc.nominal)
			}
			// The measured share of users reaching the rule is close to the nominal one.
			if got := sp.Rules[0].ShareOfReached; got < tc.nominal-4 || got > tc.nominal+4 {
				t.Errorf("share of reached = %v, want about %v", got, tc.nominal)
			}
		})
	}
}

func TestSplitRefusals(t *testing.T) {
	snap := rolloutConfig(t)
	for _, tc := range []struct {
		name string
		in   config.SplitInput
		code string
		msg  string
	}{
		{"no users", config.SplitInput{Context: "sales"}, "invalid_request", "users must be from 1 to 100000, got 0"},
		{"too many users", config.SplitInput{Context: "sales", Users: config.MaxSplitUsers + 1}, "invalid_request", "got 100001"},
		{"bad context", config.SplitInput{Context: "a b", Users: 10}, "invalid_request", "context must be"},
		{"bad metadata", config.SplitInput{Context: "sales", Metadata: map[string]any{"locale": 3.0}, Users: 10}, "invalid_metadata", "locale"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := snap.Split(context.Background(), tc.in)
			var invalid *config.InvalidInput
			if !errors.As(err, &invalid) || invalid.Code != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want %s with %q", err, tc.code, tc.msg)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := snap.Split(ctx, config.SplitInput{Context: "sales", Users: 10}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled split: %v", err)
	}
}

func TestSplitUserKey(t *testing.T) {
	snap := rolloutConfig(t)
	for _, tc := range []struct {
		key     string
		wantErr string
		// ids lists the ids of the first users.
		ids []string
	}{
		{key: `"cust-" + string(i)`, ids: []string{"cust-0", "cust-1", "cust-2"}},
		{key: `upper("c") + string(i * 2 + 1)`, ids: []string{"C1", "C3", "C5"}},
		{key: `string(i % 2)`, wantErr: `the user key gives "0" for both user 0 and user 2`},
		{key: `repeat("x", i)`, wantErr: "may use only i"},
		{key: `reduce(1..31, #acc + #acc, "x")`, wantErr: "may use only i"},
		{key: `"x" + i`, wantErr: "mismatched types"},
		{key: `i`, wantErr: "expected string"},
		{key: `"u-" + string(j)`, wantErr: "not j"},
		{key: strings.Repeat(`"x"+`, 60) + `"x"`, wantErr: "over 200 characters"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			id, err := config.UserKey(tc.key)
			if err == nil {
				for i, want := range tc.ids {
					if got, err := id(i); err != nil || got != want {
						t.Errorf("user %d: %q, %v, want %q", i, got, err, want)
					}
				}
				_, err = snap.Split(context.Background(), config.SplitInput{Context: "sales", Users: 10, UserID: id})
			}
			if tc.wantErr == "" && err != nil {
				t.Errorf("err = %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestSaltWarnings(t *testing.T) {
	snap := rolloutConfig(t)
	warnings := config.SaltWarnings(snap)
	if len(warnings) != 1 {
		t.Fatalf("warnings = %v, want one (v2 shrunk by v3)", warnings)
	}
	kept := 0
	for i := range 10_000 {
		id := fmt.Sprintf("u-%d", i)
		if expression.Bucket(id+":v2") < 20 && expression.Bucket(id+":v3") >= 30 {
			kept++
		}
	}
	w := warnings[0]
	want := fmt.Sprintf(`gets %.1f%% of users, not 20%%`, float64(kept)/100)
	if w.Code != config.CodeBucketOverlap || !strings.HasSuffix(w.Pos.Path, "sales.yaml") || w.Pos.Line != 5 ||
		!strings.Contains(w.Msg, `rule "v2" rolls out by 20 > bucket(user.id + ":v2")`) || !strings.Contains(w.Msg, `rule "v3" (bucket(user.id + ":v3") < 30`) ||
		!strings.Contains(w.Msg, `in context "sales"`) || !strings.Contains(w.Msg, want) {
		t.Errorf("warning = %s (%s), want one at v2 saying it %s", w, w.Code, want)
	}

	// Rollouts that share a key are ranges of one population: no overlap to warn of; and
	// overlays shrink nothing.
	root := t.TempDir()
	write(t, root, "personas/default.yaml", fmt.Sprintf(splitPersona, "default"))
	write(t, root, "rules/r.yaml", `rules:
  - {name: a, when: 'context == "s" && bucket(user.id + ":s") < 30', persona: default, priority: 2}
  - {name: o, overlay: true, when: 'context == "s" && bucket(user.id + ":o") < 30', set: {languageCode: fr}, priority: 1}
  - {name: b, when: 'context == "s" && bucket(user.id + ":s") >= 30 && bucket(user.id + ":s") < 50', persona: default}
`)
	same, err := config.Load(dirsIn(root))
	if err != nil {
		t.Fatal(err)
	}
	if w := config.SaltWarnings(same); len(w) != 0 {
		t.Errorf("one key, and an overlay: warnings %v, want none", w)
	}
}

// A rule's bucket conditions are one rollout: a range selects the values between its bounds.
func TestRolloutOfABucketRange(t *testing.T) {
	root := t.TempDir()
	write(t, root, "personas/default.yaml", "name: n\navatarId: 30fa96d0-26c4-4e55-94a0-517025942e18\nvoiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b\n")
	write(t, root, "rules/range.yaml", `rules:
  - {name: range, when: 'context == "r" && bucket(user.id) >= 50 && bucket(user.id) < 70', persona: default}
`)
	snap, err := config.Load(dirsIn(root))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := snap.Split(context.Background(), config.SplitInput{Context: "r", Users: 10000})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sp.Rules {
		if r.Rule == nil || *r.Rule != "range" {
			continue
		}
		conds, nominal, ok := r.Rollout()
		if !ok || nominal != 20 || conds != "bucket(user.id) >= 50 && bucket(user.id) < 70" {
			t.Errorf("rollout = %q %v %v, want the two conditions together at 20%%", conds, nominal, ok)
		}
		return
	}
	t.Fatalf("no share for rule range in %+v", sp.Rules)
}
