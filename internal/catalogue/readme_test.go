package catalogue_test

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/persona-router/persona-router/internal/catalogue"
)

var update = flag.Bool("update", false, "rewrite the persona field table of docs/configuration.md from the catalogue")

const (
	fieldPage  = "../../docs/configuration.md"
	tableBegin = "<!-- persona-fields:begin -->\n"
	tableEnd   = "<!-- persona-fields:end -->"
)

// TestDocsFieldTable keeps the persona field table of docs/configuration.md what the catalogue
// says; run `go test ./internal/catalogue -run FieldTable -update` to rewrite it.
func TestDocsFieldTable(t *testing.T) {
	data, err := os.ReadFile(fieldPage)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	before, rest, ok := strings.Cut(text, tableBegin)
	table, after, ok2 := strings.Cut(rest, tableEnd)
	if !ok || !ok2 {
		t.Fatalf("%s lacks the markers %q and %q", fieldPage, tableBegin, tableEnd)
	}
	want := catalogue.Markdown()
	if table == want {
		return
	}
	if *update {
		if err := os.WriteFile(fieldPage, []byte(before+tableBegin+want+tableEnd+after), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("the persona field table of %s differs from the catalogue; run go test ./internal/catalogue -run FieldTable -update\n got:\n%s\nwant:\n%s", fieldPage, table, want)
}

// TestMarkdownHasEveryField checks the table has one row a field, in the catalogue's order.
func TestMarkdownHasEveryField(t *testing.T) {
	lines := strings.Split(strings.TrimSuffix(catalogue.Markdown(), "\n"), "\n")
	want := paths(catalogue.PersonaFile, "")
	if len(lines) != len(want)+2 {
		t.Fatalf("%d rows, want %d", len(lines)-2, len(want))
	}
	for i, p := range want {
		if !strings.HasPrefix(lines[i+2], "| `"+p+"` |") {
			t.Errorf("row %d = %s, want the row of %s", i, lines[i+2], p)
		}
	}
	for _, row := range []string{
		"| `tools[].url` | URL | only for `subtype: webhook`; required; https://, or http:// for localhost only |",
		"| `directorNotes.presetStyle` | string | not empty; exactly one of `presetStyle`, `customStylePrompt` |",
		"| `session.sessionOptions.videoWidth` | integer | ≥ 1; with `videoHeight` |",
		"| `voiceDetectionOptions.endOfSpeechSensitivity` | number | 0–1 |",
		"| `tools[].method` | string | only for `subtype: webhook`; one of `GET`, `POST`, `PUT`, `PATCH`, `DELETE`; default `POST` |",
		"| `tools[].type` | string | required; no placeholders; one of `client`, `server` |",
		"| `name` | string | required (once `extends` is applied), unless `personaId`; not empty |",
	} {
		if !strings.Contains(catalogue.Markdown(), row) {
			t.Errorf("the table lacks %s", row)
		}
	}
}
