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

// TestDocsShowTheShippedConfiguration: the sample output docs/cli.md gives for `check --sandbox`
// is what it prints on the shipped configuration, and every configuration version the CLI and
// API pages show is the shipped configuration's, so an edit of rules/ or personas/ that
// changes the version, or the check summary, cannot leave the examples behind.
func TestDocsShowTheShippedConfiguration(t *testing.T) {
	t.Parallel()
	stdout, stderr, err := runCLI(t, append([]string{"check", "--sandbox"}, shipped...)...)
	if err != nil {
		t.Fatalf("check --sandbox: %v\n%s", err, stderr)
	}
	m := regexp.MustCompile(`\(version ([0-9a-f]{12})\)\n$`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("check --sandbox printed %q, without a version", stdout)
	}
	version := m[1]

	cli, err := os.ReadFile(cliPage)
	if err != nil {
		t.Fatal(err)
	}
	const command = "$ go run ./cmd/persona-router check --sandbox\n"
	_, after, ok := strings.Cut(string(cli), command)
	if !ok {
		t.Fatalf("%s does not show %q", cliPage, command)
	}
	if line, _, _ := strings.Cut(after, "\n"); line+"\n" != stdout {
		t.Errorf("%s shows check printing %q; it prints %q", cliPage, line, stdout)
	}

	shown := regexp.MustCompile(`(?:\(version |\(configuration |"(?:configVersion|version)": ")([0-9a-f]{12})\b`)
	for _, page := range []string{cliPage, filepath.Join(repoRoot, "docs", "api.md")} {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		found := shown.FindAllStringSubmatch(string(data), -1)
		if len(found) == 0 {
			t.Errorf("%s shows no configuration version", page)
		}
		for _, f := range found {
			if f[1] != version {
				t.Errorf("%s shows %s; the shipped configuration's version is %s", page, f[0], version)
			}
		}
	}
}
