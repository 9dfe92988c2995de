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

// documented tells whether the docs give code with status: in a table row with a cell that is
// the status and a cell naming the code, or as the status followed by a code span naming the
// code ("404 `not_found`", "422 `{… "code": "invalid_config" …}`").
func documented(docs, code string, status int) bool {
	word := regexp.MustCompile(`\b` + regexp.QuoteMeta(code) + `\b`)
	for line := range strings.Lines(docs) {
		if !strings.HasPrefix(strings.TrimSpace(line), "|") {
			continue
		}
		var hasStatus, hasCode bool
		for cell := range strings.SplitSeq(line, "|") {
			cell = strings.TrimSpace(cell)
			hasStatus = hasStatus || cell == strconv.Itoa(status)
			hasCode = hasCode || strings.HasPrefix(cell, "`"+code+"`")
		}
		if hasStatus && hasCode {
			return true
		}
	}
	inline := regexp.MustCompile(`\b` + strconv.Itoa(status) + `\s+` + "`([^`]*)`")
	for _, m := range inline.FindAllStringSubmatch(docs, -1) {
		if word.MatchString(m[1]) {
			return true
		}
	}
	return false
}

// Every code of the table is documented with the status it is answered with.
func TestErrorCodesAreDocumented(t *testing.T) {
	docs := documentation(t)
	for c := range numCodes {
		if row := codes[c]; !documented(docs, row.name, row.status) {
			t.Errorf("the docs do not give %d `%s` (a row of the error table, or the status followed by the code)", row.status, row.name)
		}
	}
	// The check itself must be able to fail.
	if documented(docs, "upstream_rejected", http.StatusTeapot) || documented(docs, "no_such_code", http.StatusBadRequest) {
		t.Error("documented accepts a pair the docs do not give")
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
	snap := loadConfig(t, tokenConfig)
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
