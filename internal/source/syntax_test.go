package source

import (
	"strings"
	"testing"
)

func TestSyntaxErrors(t *testing.T) {
	fourteen := "# Cara answers questions about orders.\nname: \"Cara\navatarId: 30fa96d0\nvoiceId: 6bfbe25a\nllmId: CUSTOMER_CLIENT_V1\n" +
		"languageCode: en\nsystemPrompt: >-\n  You are Cara. You help customers\n  with their orders.\n\n  Keep answers short.\n" +
		"skipGreeting: false\nmaxSessionLengthSeconds: 600\ntags: [a, b]\n"
	for _, tc := range []struct{ name, yaml, want string }{
		{"unclosed double quote", fourteen,
			`f.yaml:2:7: YAML syntax error: unclosed double quote opened here: expected a closing " before line 3 (inside double quotes a quote is written \")`},
		{"unclosed double quote on the first line, closed by a later one", "name: \"Cara\nb: 2\nc: \"x\"\n",
			`f.yaml:1:7: YAML syntax error: unclosed double quote opened here: expected a closing " before line 2 (inside double quotes a quote is written \")`},
		{"unclosed double quote at the end", "a: 1\nb: \"x\n",
			`f.yaml:2:4: YAML syntax error: unclosed double quote opened here: expected a closing " before the end of the file (inside double quotes a quote is written \")`},
		{"unclosed single quote", "a: 1\nname: 'Cara\nb: 2\nc: 3\n",
			`f.yaml:2:7: YAML syntax error: unclosed single quote opened here: expected a closing ' before line 3 (inside single quotes a quote is written '')`},
		{"quotes inside a block scalar are text", "a: |\n  x\n  \"y\nb: 'z\nc: 1\n",
			`f.yaml:4:4: YAML syntax error: unclosed single quote opened here: expected a closing ' before line 5 (inside single quotes a quote is written '')`},
		{"quotes inside a plain value are text", "a: say \"hi\nb: 'z\n",
			`f.yaml:2:4: YAML syntax error: unclosed single quote opened here: expected a closing ' before the end of the file (inside single quotes a quote is written '')`},
		{"quotes in a comment are text", "a: 1 # note: 'x\nb: [x\nc: 2\n",
			`f.yaml:2:4: YAML syntax error: unclosed [ opened here: expected ] before line 3`},
		{"unclosed brace", "a: 1\nname: {x: 1\nb: 2\nc: 3\n",
			`f.yaml:2:7: YAML syntax error: unclosed { opened here: expected } before line 3`},
		{"unclosed bracket", "a: 1\nname: [x, 1\nb: 2\n",
			`f.yaml:2:7: YAML syntax error: unclosed [ opened here: expected ] before line 3`},
		{"mismatched brackets", "a: {b: [1, 2}\n",
			`f.yaml:1:8: YAML syntax error: unclosed [ opened here: expected ] before the } on line 1, column 13`},
		{"tab indents a key", "a: 1\nb:\n\tc: 2\nd: 4\n",
			`f.yaml:3:1: YAML syntax error: a tab character indents this line; YAML indents with spaces`},
		{"tab after spaces", "a:\n  b: 1\n  \tc: 2\n",
			`f.yaml:3:3: YAML syntax error: a tab character indents this line; YAML indents with spaces`},
		{"when: quoted, then more text", "rules:\n  - name: x\n    when: \"context == 'sales\" && x\n    persona: d\n",
			`f.yaml:3:11: YAML syntax error: text after the closing " of a quoted value (line 3, column 29): a value that starts with a quote ends at the next "; to use quotes inside a value, put the whole value in single quotes or leave it unquoted`},
		{"when: single-quoted, then more text", "rules:\n  - name: x\n    when: 'context == \"sales' && x\n",
			`f.yaml:3:11: YAML syntax error: text after the closing ' of a quoted value (line 3, column 29): a value that starts with a quote ends at the next '; to use quotes inside a value, put the whole value in double quotes or leave it unquoted`},
		{"colon in a value", "a: 1\nsystemPrompt: Note: be brief\nc: 2\n",
			`f.yaml:2:1: YAML syntax error: mapping values are not allowed in this context (a ": " inside an unquoted value starts a new key; put the whole value in quotes: systemPrompt: "Note: be brief")`},
		{"missing space after a colon", "a: 1\nb:2\nc: 3\n",
			`f.yaml:2:1: YAML syntax error: could not find expected ':' (a key needs a space after its colon: b: 2)`},
		{"no colon", "a: 1\nb\nc: 2\n",
			`f.yaml:2:1: YAML syntax error: could not find expected ':' (each line of a mapping is "key: value", and this one has no ": ")`},
		{"key indented one space too far", "a:\n  b: 1\n   c: 2\nd: 3\n",
			`f.yaml:3:4: YAML syntax error: mapping values are not allowed in this context (this line is indented more than "b" on line 2, so it reads as more of that key's value; indent it as much as the key it belongs with)`},
		{"list item among keys", "a:\n  b: 1\n  - c\nd: 3\n",
			`f.yaml:3:3: YAML syntax error: did not find expected key (a list item "- " cannot sit among the keys of a mapping at the same indentation; put the list under a key and indent it)`},
		{"key among list items", "rules:\n  - name: x\n    when: y\n  persona: z\n",
			`f.yaml:4:3: YAML syntax error: did not find expected '-' indicator (a key cannot sit among the "- " items of a list at the same indentation; indent it under its item, or line it up with the key that holds the list)`},
		{"key outdented", "a:\n  b: 1\n c: 2\n",
			`f.yaml:3:2: YAML syntax error: did not find expected key (this line does not line up with the keys above it; indent it as much as the keys it belongs with)`},
		{"unknown alias", "a: x\nb: *nope\n",
			`f.yaml:2:4: YAML syntax error: unknown anchor 'nope' referenced (*nope names no anchor &nope above it)`},
		{"reserved character", "a: 1\nb: @x\n",
			"f.yaml:2:1: YAML syntax error: found character that cannot start any token (a value cannot start with @, ` or %; put it in quotes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, errs := Parse("f.yaml", []byte(tc.yaml))
			if root != nil || len(errs) != 1 {
				t.Fatalf("Parse = %v, %v; want one error", root, errs)
			}
			if got := errs[0].Error(); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// TestSyntaxValid makes sure the scan finds nothing wrong with valid YAML that looks odd to it.
func TestSyntaxValid(t *testing.T) {
	for _, text := range []string{
		"a: \"x\ny\"\n",
		"a: 'it''s'\nb: \"say \\\"hi\\\"\"\n",
		"a: {b: [1, \"2]\"], c: 'd}'}\n",
		"a: |\n  \"unclosed\n  'also\n  [and {\nb: >-\n  x\ty\n",
		"\"quoted key\": v\n'other': w\n",
		"a: x # comment with \" and [\n",
		"a: &anchor 'v'\nb: *anchor\n",
		"- \"a\"\n- [b, 'c']\n- {d: e}\n",
	} {
		sc := scanSyntax(splitForTest(text))
		if sc.problem != nil {
			t.Errorf("%q: scan found %q at %d:%d in valid YAML", text, sc.problem.msg, sc.problem.line, sc.problem.col)
		}
	}
}

func splitForTest(text string) []string { return strings.Split(text, "\n") }
