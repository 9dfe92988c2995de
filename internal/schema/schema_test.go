package schema

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/persona-router/persona-router/internal/source"
)

func parse(t *testing.T, yamlText string) []*Field {
	t.Helper()
	root, err := source.Parse("r.yaml", []byte(yamlText))
	if err != nil {
		t.Fatal(err)
	}
	fields, errs := Parse("r.yaml", root)
	if errs != nil {
		t.Fatal(errs)
	}
	return fields
}

const declared = `
tier:    {type: string, enum: [free, pro, enterprise]}
product: {type: string, maxLength: 8, pattern: "^[A-Za-z0-9 ._-]+$"}
seats:   {type: integer, min: 1, max: 100000}
ratio:   {type: number, min: 0, max: 1}
trial:   {type: boolean}
`

func jsonMap(t *testing.T, text string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(text), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestValidate(t *testing.T) {
	s, errs := New(parse(t, declared))
	if errs != nil {
		t.Fatal(errs)
	}
	for _, ok := range []string{
		`{}`,
		`{"tier": "pro", "product": "Atlas", "seats": 12, "ratio": 0.5, "trial": false}`,
		`{"seats": 1e2}`,
	} {
		if err := s.Validate(jsonMap(t, ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for body, want := range map[string]string{
		`{"region": "EU"}`:           `metadata.region is not declared (declared: product, ratio, seats, tier, trial)`,
		`{"tier": "gold"}`:           `metadata.tier must be one of "free", "pro", "enterprise", got "gold"`,
		`{"tier": 3}`:                `metadata.tier must be a string, got 3`,
		`{"product": "Atlas Pro X"}`: `metadata.product must be at most 8 characters long, got 11`,
		`{"product": "At<las>"}`:     `metadata.product must match ^[A-Za-z0-9 ._-]+$, got "At<las>"`,
		`{"seats": 0}`:               `metadata.seats must be at least 1, got 0`,
		`{"seats": 100001}`:          `metadata.seats must be at most 100000, got 100001`,
		`{"seats": 2.5}`:             `metadata.seats must be an integer, got 2.5`,
		`{"seats": "12"}`:            `metadata.seats must be a number, got "12"`,
		`{"ratio": 1.5}`:             `metadata.ratio must be at most 1, got 1.5`,
		`{"trial": "yes"}`:           `metadata.trial must be true or false, got "yes"`,
		`{"tier": {"a": 1}}`:         `metadata.tier must be a string, got an object`,
	} {
		err := s.Validate(jsonMap(t, body))
		if err == nil || err.Error() != want {
			t.Errorf("%s: %v\nwant %s", body, err, want)
		}
	}
}

// A declared key given as null is the key left out: every declared key is optional.
func TestNullIsAbsent(t *testing.T) {
	s, errs := New(parse(t, declared))
	if errs != nil {
		t.Fatal(errs)
	}
	if err := s.Validate(map[string]any{"trial": nil, "tier": nil}); err != nil {
		t.Errorf("null for declared keys: %v, want accepted", err)
	}
	if err := s.Validate(map[string]any{"region": nil}); err == nil {
		t.Error("null for an undeclared key was accepted")
	}
}

func TestGenericBounds(t *testing.T) {
	var none *Schema
	many := map[string]any{}
	for i := range MaxKeys + 1 {
		many[strings.Repeat("k", i+1)] = i
	}
	// metadata is the first level; a, b and c the next three; d's object would be the fifth.
	deep := map[string]any{"a": map[string]any{"b": map[string]any{"c": map[string]any{"d": map[string]any{"e": 1}}}}}
	for name, tc := range map[string]struct {
		md   map[string]any
		want string
	}{
		"too many keys":   {many, "metadata has 65 keys, more than 64"},
		"too deep":        {deep, "metadata.a.b.c.d nests deeper than 4 levels"},
		"long string":     {map[string]any{"note": strings.Repeat("x", 1025)}, "metadata.note is 1025 bytes long, more than 1024"},
		"long in a list":  {map[string]any{"l": []any{"ok", strings.Repeat("x", 2000)}}, "metadata.l[1] is 2000 bytes long"},
		"a list too long": {map[string]any{"l": make([]any, 65)}, "metadata.l has 65 items, more than 64"},
	} {
		err := none.Validate(tc.md)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %s", name, err, tc.want)
		}
	}
	ok := map[string]any{"a": map[string]any{"b": map[string]any{"c": map[string]any{"d": 1}}}, "s": strings.Repeat("x", 1024)}
	if err := none.Validate(ok); err != nil {
		t.Errorf("within bounds: %v", err)
	}
	// The bounds hold with a schema too.
	s, _ := New(parse(t, "note: {type: string}\n"))
	if err := s.Validate(map[string]any{"note": strings.Repeat("x", 1025)}); err == nil {
		t.Error("a declared string over 1 KiB passed")
	}
}

func TestParseErrors(t *testing.T) {
	for text, want := range map[string]string{
		"tier: {enum: [a]}":                       `r.yaml:1:1: metadata.tier has no type`,
		"tier: {type: text}":                      `r.yaml:1:14: metadata.tier.type must be one of string, number, integer, boolean, got "text"`,
		"tier: {type: string, enum: [1]}":         `r.yaml:1:29: metadata.tier.enum: 1 is not a string`,
		"tier: {type: string, pattern: '('}":      `r.yaml:1:31: metadata.tier.pattern is not a valid regular expression`,
		"tier: {type: string, min: 1}":            `r.yaml:1:22: metadata.tier: min and max apply to numbers and integers, not to string`,
		"seats: {type: integer, min: 10, max: 5}": `r.yaml:1:38: metadata.seats.max (5) is less than its min (10): no value could be valid`,
		"tier: {type: integer, maxLength: 3}":     `r.yaml:1:1: metadata.tier: maxLength and pattern apply to strings, not to integer`,
		"tier: {type: string, maxlength: 3}":      `r.yaml:1:22: unknown field "maxlength" in metadata.tier, did you mean "maxLength"?`,
		"seats: {type: integer, max: lots}":       `r.yaml:1:29: metadata.seats.max must be a number, got a string`,
		"- tier":                                  `r.yaml:1:1: metadata must be a mapping, got a list`,
	} {
		root, perr := source.Parse("r.yaml", []byte(text))
		if perr != nil {
			t.Fatal(perr)
		}
		_, errs := Parse("r.yaml", root)
		if len(errs) == 0 || !strings.HasPrefix(errs[0].Error(), want) {
			t.Errorf("%s: %v\nwant %s", text, errs, want)
		}
	}
}

func TestMergeAcrossFiles(t *testing.T) {
	a := parse(t, "tier: {type: string, enum: [free, pro]}\n")
	same := parse(t, "tier: {enum: [free, pro], type: string}\n")
	if _, errs := New(append(a, same...)); errs != nil {
		t.Errorf("an identical declaration in two files: %v", errs)
	}
	different := parse(t, "tier: {type: string, enum: [free, pro, enterprise]}\n")
	_, errs := New(append(a, different...))
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "metadata.tier is declared differently at r.yaml:1:1") {
		t.Errorf("conflicting declarations: %v", errs)
	}
}

// FuzzValidate feeds arbitrary JSON metadata to a schema: Validate must never panic, and what
// it accepts must be within the generic bounds.
func FuzzValidate(f *testing.F) {
	for _, seed := range []string{`{}`, `{"tier": "pro", "seats": 3}`, `{"a": {"b": {"c": {"d": [1]}}}}`, `{"seats": 1e308}`, `{"tier": null}`} {
		f.Add(seed)
	}
	root, _ := source.Parse("r.yaml", []byte(declared))
	fields, _ := Parse("r.yaml", root)
	s, _ := New(fields)
	var none *Schema
	f.Fuzz(func(t *testing.T, text string) {
		var md map[string]any
		if json.Unmarshal([]byte(text), &md) != nil {
			return
		}
		for _, sc := range []*Schema{s, none} {
			if sc.Validate(md) == nil && checkBounds(md, true) != nil {
				t.Fatalf("accepted metadata out of bounds: %s", text)
			}
			// The fast pass and the explaining pass must agree.
			if (sc.check(md, false) == nil) != (sc.check(md, true) == nil) {
				t.Fatalf("the two passes disagree on %s", text)
			}
		}
	})
}

// BenchmarkValidate measures checking typical valid request metadata, with and without a
// schema: the request path pays it on every token request.
func BenchmarkValidate(b *testing.B) {
	root, _ := source.Parse("r.yaml", []byte(declared))
	fields, _ := Parse("r.yaml", root)
	s, _ := New(fields)
	md := map[string]any{"tier": "pro", "product": "Atlas", "seats": 12.0, "trial": false}
	for name, sc := range map[string]*Schema{"declared": s, "none": nil} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := sc.Validate(md); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzValidContext holds ValidContext to the rule it implements, the regular expression
// ContextRule describes.
func FuzzValidContext(f *testing.F) {
	rule := regexp.MustCompile(`^[A-Za-z0-9._-]{0,64}$`)
	for _, seed := range []string{"", "sales", "a.b_c-D9", strings.Repeat("a", 64), strings.Repeat("a", 65), "a b", "é", "\xff",
		"sales\n", "\nsales", "a/b", "A+Z", "@", "[", "`", "{", ":", "日本"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidContext(s), rule.MatchString(s); got != want {
			t.Fatalf("ValidContext(%q) = %v, the rule says %v", s, got, want)
		}
	})
}
