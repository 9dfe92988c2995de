package server

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/persona-router/persona-router/internal/config/configtest"
	"github.com/persona-router/persona-router/internal/expression"
)

// Every row of the code table is filled in with an error status.
func TestErrorCodeTableIsComplete(t *testing.T) {
	for c := range numCodes {
		row := codes[c]
		if row.name == "" {
			t.Errorf("error code %d has no row in codes", c)
		}
		if row.status < 400 || row.status > 599 || http.StatusText(row.status) == "" {
			t.Errorf("%s answers status %d, not an HTTP error status", row.name, row.status)
		}
	}
}

// documentation is the README and every page under docs/, where the error codes are
// documented.
func documentation(t *testing.T) string {
	t.Helper()
	root := filepath.Join("..", "..")
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	pages, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	for _, p := range pages {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		text += "\n" + string(data)
	}
	return text
}

// documentedPair is an error code with the status the docs give it.
type documentedPair struct {
	status int
	code   string
}

var (
	// inlinePair is a status followed by a code span: "404 `not_found`",
	// "422 `{… "code": "invalid_config" …}`".
	inlinePair = regexp.MustCompile("\\b([1-5][0-9][0-9])\\s+`([^`]*)`")
	codeWord   = regexp.MustCompile(`[a-z]+(?:_[a-z]+)+|[a-z]+`)
)

// documentedPairs lists what the docs give: in a table row, a cell that is a status and a cell
// that starts with a code span; or a status followed by a code span naming the code.
func documentedPairs(docs string) map[documentedPair]bool {
	pairs := make(map[documentedPair]bool)
	for line := range strings.Lines(docs) {
		if !strings.HasPrefix(strings.TrimSpace(line), "|") {
			continue
		}
		var statuses []int
		var names []string
		for cell := range strings.SplitSeq(line, "|") {
			cell = strings.TrimSpace(cell)
			if n, err := strconv.Atoi(cell); err == nil {
				statuses = append(statuses, n)
			}
			if rest, ok := strings.CutPrefix(cell, "`"); ok {
				if name, _, ok := strings.Cut(rest, "`"); ok {
					names = append(names, name)
				}
			}
		}
		for _, st := range statuses {
			for _, name := range names {
				pairs[documentedPair{st, name}] = true
			}
		}
	}
	for _, m := range inlinePair.FindAllStringSubmatch(docs, -1) {
		st, _ := strconv.Atoi(m[1])
		for _, name := range codeWord.FindAllString(m[2], -1) {
			pairs[documentedPair{st, name}] = true
		}
	}
	return pairs
}

// Every code of the table is documented with the status it is answered with.
func TestErrorCodesAreDocumented(t *testing.T) {
	pairs := documentedPairs(documentation(t))
	for c := range numCodes {
		if row := codes[c]; !pairs[documentedPair{row.status, row.name}] {
			t.Errorf("the docs do not give %d `%s` (a row of the error table, or the status followed by the code)", row.status, row.name)
		}
	}
	// The check itself must be able to fail.
	if pairs[documentedPair{http.StatusTeapot, "upstream_rejected"}] || pairs[documentedPair{http.StatusBadRequest, "no_such_code"}] {
		t.Error("documentedPairs finds a pair the docs do not give")
	}
}

// No handler pairs a status with an error code by hand: outside errors.go no error status is
// named, and only abort writes an error answer.
func TestNoStatusPairedByHand(t *testing.T) {
	fset := token.NewFileSet()
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	aborts := 0
	for _, path := range paths {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				name := sel.Sel.Name
				if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "http" && strings.HasPrefix(name, "Status") &&
					name != "StatusOK" && name != "StatusText" && path != "errors.go" {
					t.Errorf("%s: http.%s outside the code table; name an error code instead", fset.Position(sel.Pos()), name)
				}
				if strings.HasPrefix(name, "AbortWith") {
					if fn.Name.Name != "abort" {
						t.Errorf("%s: %s outside abort; answer errors with abort and a code", fset.Position(sel.Pos()), name)
					} else {
						aborts++
					}
				}
				return true
			})
		}
	}
	if aborts == 0 {
		t.Fatal("abort writes no answer that this check recognises: the check looks at nothing")
	}
}

// What explain says the token endpoint would refuse agrees with what the endpoint answers.
func TestRefusalsFollowTheCodeTable(t *testing.T) {
	snap := configtest.Load(t, tokenConfig)
	for _, tc := range []struct {
		in   expression.Input
		code errorCode
	}{
		{expression.Input{Context: "a b"}, codeInvalidRequest},
		{expression.Input{Metadata: map[string]any{"tier": "gold"}}, codeInvalidMetadata},
	} {
		r := snap.Refusal(tc.in)
		if r == nil {
			t.Fatalf("%+v: no refusal, want %s", tc.in, tc.code)
		}
		if r.Code != tc.code.String() || r.Status != tc.code.Status() {
			t.Errorf("%+v: explain refuses with %d %s, the token endpoint with %d %s", tc.in, r.Status, r.Code, tc.code.Status(), tc.code)
		}
	}
}
