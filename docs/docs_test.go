// Package docs holds the documentation pages; its tests keep them navigable and true to the
// code: every relative link and #anchor leads somewhere, every metric the service has is
// documented, and development.md's package map lists every package. (Every error code with its
// status: internal/server's TestErrorCodesAreDocumented.)
package docs

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// pages returns README.md and every docs/*.md, as paths relative to this directory.
func pages(t *testing.T) []string {
	t.Helper()
	found, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(found) == 0 {
		t.Fatal("no docs/*.md pages found")
	}
	return append([]string{filepath.Join("..", "README.md")}, found...)
}

var (
	fence      = regexp.MustCompile("^\\s*(```|~~~)")
	heading    = regexp.MustCompile(`^(#{1,6})\s+(.*?)\s*#*\s*$`)
	inlineCode = regexp.MustCompile("`+[^`]*`+")
	// A markdown link or image: [text](target) or ![alt](target), with an optional title.
	link     = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	linkText = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
)

// prose returns the lines of a markdown file outside fenced code blocks, numbered from 1.
func prose(text string) map[int]string {
	lines := map[int]string{}
	inFence := false
	for i, line := range strings.Split(text, "\n") {
		if fence.MatchString(line) {
			inFence = !inFence
			continue
		}
		if !inFence {
			lines[i+1] = line
		}
	}
	return lines
}

// linkable returns a markdown file with its fenced code blocks and inline code blanked out
// (newlines kept, so offsets still give line numbers): what is left can hold links, which may
// span lines.
func linkable(text string) string {
	lines := strings.Split(text, "\n")
	inFence := false
	for i, line := range lines {
		if fence.MatchString(line) {
			inFence = !inFence
			lines[i] = ""
		} else if inFence {
			lines[i] = ""
		}
	}
	return inlineCode.ReplaceAllStringFunc(strings.Join(lines, "\n"), func(code string) string {
		return strings.Map(func(r rune) rune {
			if r == '\n' {
				return r
			}
			return ' '
		}, code)
	})
}

// slug is GitHub's anchor for a heading: the heading's text lowercased, with everything but
// letters, digits, spaces, hyphens and underscores removed, and spaces turned into hyphens.
func slug(text string) string {
	text = linkText.ReplaceAllString(text, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns the anchors of every heading of a markdown file; a repeated heading gets
// -1, -2… as on GitHub.
func anchors(text string) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	lines := prose(text)
	for _, n := range slices.Sorted(maps.Keys(lines)) {
		m := heading.FindStringSubmatch(lines[n])
		if m == nil {
			continue
		}
		s := slug(m[2])
		if k := seen[s]; k > 0 {
			out[fmt.Sprintf("%s-%d", s, k)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

// brokenLinks lists every relative link or #anchor of the page at path that does not resolve.
func brokenLinks(path string, read func(string) (string, error)) ([]string, error) {
	text, err := read(path)
	if err != nil {
		return nil, err
	}
	var broken []string
	text = linkable(text)
	for _, m := range link.FindAllStringSubmatchIndex(text, -1) {
		n := strings.Count(text[:m[0]], "\n") + 1
		target := text[m[2]:m[3]]
		if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
			continue
		}
		file, anchor, _ := strings.Cut(target, "#")
		dest := path
		if file != "" {
			dest = filepath.Join(filepath.Dir(path), filepath.FromSlash(file))
			if _, err := os.Stat(dest); err != nil {
				broken = append(broken, fmt.Sprintf("%s:%d: %s: no file %s", path, n, target, dest))
				continue
			}
		}
		if anchor == "" {
			continue
		}
		if !strings.HasSuffix(dest, ".md") {
			broken = append(broken, fmt.Sprintf("%s:%d: %s: an anchor into a file that is not markdown", path, n, target))
			continue
		}
		destText, err := read(dest)
		if err != nil {
			return nil, err
		}
		if !anchors(destText)[anchor] {
			broken = append(broken, fmt.Sprintf("%s:%d: %s: %s has no heading with the anchor #%s", path, n, target, dest, anchor))
		}
	}
	return broken, nil
}

func readFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	return string(data), err
}

// TestLinks checks that every relative link and #anchor in README.md and docs/*.md leads to a
// file that exists and, for an anchor, to a heading of that file.
func TestLinks(t *testing.T) {
	links := 0
	for _, page := range pages(t) {
		text, err := readFile(page)
		if err != nil {
			t.Fatal(err)
		}
		links += len(link.FindAllString(linkable(text), -1))
		broken, err := brokenLinks(page, readFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range broken {
			t.Error(b)
		}
	}
	if links < 20 {
		t.Fatalf("found only %d links in the pages: is the link pattern still right?", links)
	}
}

// TestLinksCatchBreakage feeds the checker pages with a broken link, a broken anchor and good
// ones, so TestLinks cannot pass by checking nothing.
func TestLinksCatchBreakage(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"a.md": "# Page A\n\n## Who is asking: `--auth`\n\n## Persona templates (`personas/<id>.yaml`)\n\n## Twice\n\n## Twice\n\n" +
			"[ok](#who-is-asking---auth) [ok](#persona-templates-personasidyaml) [ok](b.md#section-b) [ok](#twice-1)\n" +
			"[bad anchor](b.md#nope) [bad file](c.md) [bad local](#missing) [a link\nover two lines](#nowhere)\n" +
			"```\n[in code](nowhere.md)\n# not a heading\n```\n`[inline](nowhere.md)` [web](https://example.com/x#y)\n",
		"b.md": "# Section B\n\n```\n## Hidden\n```\n[in a fence anchor](#hidden)\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, name := range []string{"a.md", "b.md"} {
		broken, err := brokenLinks(filepath.Join(dir, name), readFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range broken {
			got = append(got, strings.TrimPrefix(b, dir+string(filepath.Separator)))
		}
	}
	want := []string{
		"a.md:12: b.md#nope: " + filepath.Join(dir, "b.md") + " has no heading with the anchor #nope",
		"a.md:12: c.md: no file " + filepath.Join(dir, "c.md"),
		"a.md:12: #missing: " + filepath.Join(dir, "a.md") + " has no heading with the anchor #missing",
		"a.md:12: #nowhere: " + filepath.Join(dir, "a.md") + " has no heading with the anchor #nowhere",
		"b.md:6: #hidden: " + filepath.Join(dir, "b.md") + " has no heading with the anchor #hidden",
	}
	if !slices.Equal(got, want) {
		t.Errorf("broken links:\n got %q\nwant %q", got, want)
	}
}

// goStrings returns the string constants of the non-test Go files under dir (recursively)
// whose constant name or value keep says to keep.
func goStrings(t *testing.T, dir string, keep func(name, value string) bool) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				for i, name := range n.Names {
					if i < len(n.Values) {
						if lit, ok := n.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							if v, err := strconv.Unquote(lit.Value); err == nil && keep(name.Name, v) {
								out = append(out, v)
							}
						}
					}
				}
			case *ast.BasicLit:
				if n.Kind == token.STRING {
					if v, err := strconv.Unquote(n.Value); err == nil && keep("", v) {
						out = append(out, v)
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestMetricsDocumented checks every persona_router_* metric the code names is in operations.md.
func TestMetricsDocumented(t *testing.T) {
	metric := regexp.MustCompile(`^persona_router_[a-z_]+$`)
	metrics := goStrings(t, filepath.Join("..", "internal"), func(_, value string) bool {
		return metric.MatchString(value)
	})
	if len(metrics) < 10 {
		t.Fatalf("found only the metrics %q under internal/", metrics)
	}
	ops, err := readFile("operations.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := regexp.MustCompile("`(persona_router_[a-z_]+)[{`]")
	names := map[string]bool{}
	for _, m := range documented.FindAllStringSubmatch(ops, -1) {
		names[m[1]] = true
	}
	for _, m := range metrics {
		if !names[m] {
			t.Errorf("metric %s is not documented in docs/operations.md", m)
		}
	}
}

// TestPackageMap: development.md's package map names every package under internal/ (a
// package with Go files), and nothing that is not there.
func TestPackageMap(t *testing.T) {
	text, err := readFile("development.md")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^(internal/\S+)\s`).FindAllStringSubmatch(text, -1) {
		listed[m[1]] = true
	}
	have := map[string]bool{}
	err = filepath.WalkDir(filepath.Join("..", "internal"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		dir, _ := filepath.Rel("..", filepath.Dir(path))
		have[filepath.ToSlash(dir)] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(have) == 0 {
		t.Fatal("no Go packages found under ../internal")
	}
	for _, p := range slices.Sorted(maps.Keys(have)) {
		if !listed[p] {
			t.Errorf("development.md's package map does not list %s", p)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(listed)) {
		if !have[p] {
			t.Errorf("development.md's package map lists %s, which has no Go files", p)
		}
	}
}
