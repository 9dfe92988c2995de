package source

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// valueOf returns the value of key in the top-level mapping, or in the first item of the
// top-level "rules" list.
func valueOf(t *testing.T, root *yaml.Node, key string) *yaml.Node {
	t.Helper()
	if root.Content[0].Value == "rules" {
		root = root.Content[1].Content[0]
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == key {
			return root.Content[i+1]
		}
	}
	t.Fatalf("no key %q", key)
	return nil
}

func TestOffset(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, key string
		// at is the text whose first character is looked up, as expr reports it: line 1 and
		// the character's index in the value, unless line is set.
		at        string
		line, col int
		want      string
	}{
		{"plain", "k: Hi {{ usr }}\n", "k", "usr", 0, 0, "f.yaml:1:10"},
		{"double-quoted", `k: "Hi {{ usr }}"`, "k", "usr", 0, 0, "f.yaml:1:11"},
		{"folded, third line", "name: x\nsystemPrompt: >-\n  You help people.\n  Be kind and brief.\n  Greet {{ usr }} warmly.\n",
			"systemPrompt", "usr", 0, 0, "f.yaml:5:12"},
		{"folded, the space that joins two lines", "k: >-\n  ab\n  cd\n", "k", " ", 0, 0, "f.yaml:2:5"},
		{"folded, after a blank line", "k: >\n  para one\n  still one\n\n  para {{ usr }}\n", "k", "usr", 0, 0, "f.yaml:5:11"},
		{"when folded, second line", "rules:\n  - name: a\n    when: >-\n      context == \"sales\" &&\n      metadata.tier = \"pro\"\n",
			"when", `= "pro"`, 0, 0, "f.yaml:5:21"},
		{"literal, line and column as expr reports them", "k: |\n  a &&\n  b &&\n  c = 1\n", "k", "", 3, 2, "f.yaml:4:5"},
		{"literal, col running on past its line", "k: |-\n  ab\n  cd {{ usr }}\n", "k", "usr", 0, 0, "f.yaml:3:9"},
		{"literal with a comment on its header", "k: |  # note\n    deep {{ usr }}\n", "k", "usr", 0, 0, "f.yaml:2:13"},
		{"end of a folded value", "k: >-\n  a &&\n  b &&\n", "k", "", 1, 12, "f.yaml:3:7"},
		{"double-quoted over two lines", "k: \"first line\n  second {{ usr }} here\"\n", "k", "usr", 0, 0, "f.yaml:2:13"},
		{"double-quoted, escaped line break", "k: \"first \\\n  second {{ usr }}\"\n", "k", "usr", 0, 0, "f.yaml:2:13"},
		{"plain over two lines", "k: first\n  second {{ usr }}\n", "k", "usr", 0, 0, "f.yaml:2:13"},
		{"escaped quotes", `k: "say \"hi\" to {{ usr }}"`, "k", "usr", 0, 0, "f.yaml:1:22"},
		{"hex escapes", `k: "\x41\x42 {{ usr }}"`, "k", "usr", 0, 0, "f.yaml:1:17"},
		{"unicode escapes", `k: "\u00e9t\u00e9 {{ usr }}"`, "k", "usr", 0, 0, "f.yaml:1:22"},
		{"single quotes doubled", `k: 'it''s {{ usr }}'`, "k", "usr", 0, 0, "f.yaml:1:14"},
		{"alias to a folded value", "a: &p >-\n  x\n  {{ usr }}\nk: *p\n", "k", "usr", 0, 0, "f.yaml:3:6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, errs := Parse("f.yaml", []byte(tc.yaml))
			if errs != nil {
				t.Fatal(errs)
			}
			n := valueOf(t, root, tc.key)
			line, col := tc.line, tc.col
			if line == 0 {
				line, col = 1, len([]rune(resolveAlias(n).Value[:strings.Index(resolveAlias(n).Value, tc.at)]))
			}
			if got := Offset("f.yaml", n, line, col).String(); got != tc.want {
				t.Errorf("Offset(%d, %d) = %s, want %s", line, col, got, tc.want)
			}
		})
	}
}

func TestValueAt(t *testing.T) {
	for _, tc := range []struct {
		yaml   string
		want   string
		wantOK bool
	}{
		{"k: abc\n", "f.yaml:1:4", true},
		{"k: 'abc'\n", "f.yaml:1:5", true},
		{"k: |\n  abc\n", "f.yaml:2:3", false},
		{"k: >-\n    abc\n", "f.yaml:2:5", false},
		{"k: \"a\\tb\"\n", "f.yaml:1:5", false},
	} {
		root, errs := Parse("f.yaml", []byte(tc.yaml))
		if errs != nil {
			t.Fatal(errs)
		}
		pos, ok := ValueAt("f.yaml", root.Content[1])
		if pos.String() != tc.want || ok != tc.wantOK {
			t.Errorf("%q: ValueAt = %s, %v; want %s, %v", tc.yaml, pos, ok, tc.want, tc.wantOK)
		}
	}
}

// TestOffsetWithoutParse keeps the old answer for nodes that Parse did not return.
func TestOffsetWithoutParse(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("k: >-\n  a\n  {{ usr }}\nv: abc\n"), &doc); err != nil {
		t.Fatal(err)
	}
	m := doc.Content[0]
	if got := Offset("f.yaml", m.Content[1], 1, 5).String(); got != "f.yaml:1:4" {
		t.Errorf("block scalar: %s, want the node's position f.yaml:1:4", got)
	}
	if got := Offset("f.yaml", m.Content[3], 1, 2).String(); got != "f.yaml:4:6" {
		t.Errorf("plain scalar: %s, want f.yaml:4:6", got)
	}
}
