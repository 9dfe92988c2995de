package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// cliPage is the reference of every command, flag and environment variable.
var cliPage = filepath.Join(repoRoot, "docs", "cli.md")

// cliSections returns docs/cli.md's "## " sections by title, a command's ("## `check`")
// without its backquotes.
func cliSections(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(cliPage)
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	for _, part := range strings.Split(string(data), "\n## ")[1:] {
		title, body, _ := strings.Cut(part, "\n")
		sections[strings.Trim(title, "`")] = body
	}
	return sections
}

// serveSection returns the serve section of docs/cli.md, which holds the flag/env table.
func serveSection(t *testing.T) string {
	t.Helper()
	section, ok := cliSections(t)["serve"]
	if !ok {
		t.Fatalf("%s has no \"## `serve`\" section", cliPage)
	}
	return section
}

// TestDocsFlags checks that every flag each command lists in its -h is documented as `--flag`
// in that command's section of docs/cli.md, or in its "Configuration flags" section.
func TestDocsFlags(t *testing.T) {
	sections := cliSections(t)
	for _, cmd := range []string{"serve", "check", "explain", "split", "diff"} {
		var stdout, stderr bytes.Buffer
		_ = run(context.Background(), []string{"persona-router", cmd, "-h"}, func(string) string { return "" }, &stdout, &stderr)
		flags := helpFlag.FindAllStringSubmatch(stdout.String()+stderr.String(), -1)
		if len(flags) == 0 {
			t.Errorf("could not read the flags of `persona-router %s -h`:\n%s%s", cmd, stdout.String(), stderr.String())
			continue
		}
		section, ok := sections[cmd]
		if !ok {
			t.Errorf("%s has no \"## `%s`\" section", cliPage, cmd)
			continue
		}
		section += sections["Configuration flags"]
		for _, m := range flags {
			if !regexp.MustCompile("--" + regexp.QuoteMeta(m[1]) + "\\b").MatchString(section) {
				t.Errorf("persona-router %s takes --%s, which the %s section of %s does not document", cmd, m[1], cmd, cliPage)
			}
		}
	}
}
