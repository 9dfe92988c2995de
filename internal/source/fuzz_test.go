package source

import (
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzParse checks that recovering the place of a syntax error, and mapping every character of
// every value back to the file, never panics and lands inside the file.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"a: \"x\ny\"\n", "k: >-\n  a\n\n  b\n", "k: |+\n  a\n\n", "k: \"a\\\n  b \\u00e9\"\n", "k: 'it''s'\n",
		"a: {b: [1, 2}\n", "a: 1\nb:\n\tc: 2\n", "name: \"Cara\nb: 2\n", "a: b: c\n", "k: x\n  y\n\n  z # c\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		root, errs := Parse("f.yaml", []byte(text))
		// yaml.v3 also breaks lines at \r, NEL and the Unicode separators: count them all.
		lines := 1
		for _, c := range text {
			switch c {
			case '\n', '\r', '\u0085', '\u2028', '\u2029':
				lines++
			}
		}
		for _, e := range errs {
			if e.Pos.Line < 1 || e.Pos.Line > lines || e.Pos.Col < 1 {
				t.Fatalf("error outside the file: %v", e)
			}
		}
		var walk func(n *yaml.Node)
		walk = func(n *yaml.Node) {
			if n.Kind == yaml.ScalarNode {
				for i := range len([]rune(n.Value)) + 1 {
					// yaml.v3 places some empty values past the end: only a position Offset
					// computed itself must be inside the file.
					if p := Offset("f.yaml", n, 1, i); p != At("f.yaml", n) && (p.Line < 1 || p.Line > lines || p.Col < 1) {
						t.Fatalf("Offset(%q, 1, %d) = %v, outside the file", n.Value, i, p)
					}
				}
			}
			for _, c := range n.Content {
				walk(c)
			}
		}
		if root != nil {
			walk(root)
		}
	})
}
