package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/persona-router/persona-router/internal/config"
)

func runDiff(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("diff", flag.ContinueOnError)
	var head, base config.Dirs
	sandbox := configFlags(fs, &head)
	fs.StringVar(&base.Rules, "base-rules", "", "directory of the rule files to compare with (required)")
	fs.StringVar(&base.Personas, "base-personas", "", "directory of the persona templates to compare with (required)")
	requests := fs.String("requests", "", "a file of requests to route through both, one JSON object {\"context\", \"metadata\", \"user\"} per line")
	users := fs.Int("users", config.DefaultDiffUsers, fmt.Sprintf("how many signed-in users to simulate per context (at most %d)", config.MaxSplitUsers))
	failOnChange := fs.Bool("fail-on-change", false, "exit 1 when anything changed")
	format := fs.String("format", "text", "text, or json")
	if done, err := parseFlags(fs, args, stderr); done {
		return err
	}
	fail := func(err error) error {
		fmt.Fprintln(stderr, err)
		return exitError{err}
	}
	switch {
	case base.Rules == "" || base.Personas == "":
		return fail(errors.New("--base-rules and --base-personas are required: the configuration to compare with"))
	case *format != "text" && *format != "json":
		return fail(fmt.Errorf("--format must be text or json, got %q", *format))
	case *users < 1 || *users > config.MaxSplitUsers:
		return fail(fmt.Errorf("--users must be from 1 to %d, got %d", config.MaxSplitUsers, *users))
	}
	var reqs []config.DiffRequest
	if *requests != "" {
		f, err := os.Open(*requests)
		if err != nil {
			return fail(err)
		}
		reqs, err = config.ReadRequests(*requests, f)
		f.Close()
		if err != nil {
			return fail(err)
		}
	}
	baseSnap, err := load(base, getenv, *sandbox)
	if err != nil {
		fmt.Fprintf(stderr, "base configuration (%s, %s):\n", base.Rules, base.Personas)
		return reportLoad(err, stderr)
	}
	headSnap, err := load(head, getenv, *sandbox)
	if err != nil {
		fmt.Fprintf(stderr, "configuration (%s, %s):\n", head.Rules, head.Personas)
		return reportLoad(err, stderr)
	}
	d, err := config.Diff(ctx, baseSnap, headSnap, reqs, *users)
	if err != nil {
		return fail(err)
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(d); err != nil {
			return err
		}
	} else {
		writeDiff(stdout, d)
	}
	if *failOnChange && d.Changed() {
		return exitError{errors.New("the configurations differ")}
	}
	return nil
}

// writeDiff prints a diff for people: each changed request with its changed fields, then
// each context whose split moved, then a summary line.
func writeDiff(w io.Writer, d *config.ConfigDiff) {
	fmt.Fprintf(w, "base %s → %s: %d requests, %d contexts × %d simulated users\n", d.Base, d.Head, d.Requests, len(d.Contexts), d.Users)
	for _, r := range d.ChangedRequests {
		md, _ := json.Marshal(r.Metadata)
		user, _ := json.Marshal(r.User)
		fmt.Fprintf(w, "\n%s: context %q, metadata %s, user %s\n", strings.Join(r.Sources, ", "), r.Context, md, user)
		for _, c := range r.Changes {
			fmt.Fprintf(w, "  %s: %s\n", c.Path, change(c.Base, c.Head))
		}
	}
	for _, s := range d.ChangedSplits {
		fmt.Fprintf(w, "\nsplit of context %q (%d users):\n", s.Context, d.Users)
		for _, c := range s.Changes {
			fmt.Fprintf(w, "  %s %s: %s → %s\n", c.Kind, ruleName(c.Name), share(c.Base), share(c.Head))
		}
	}
	if !d.Changed() {
		fmt.Fprintln(w, "\nno changes")
		return
	}
	fmt.Fprintf(w, "\n%s and %s changed\n", plural(len(d.ChangedRequests), "request"), plural(len(d.ChangedSplits), "split"))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func share(s *config.Share) string {
	if s == nil {
		return "(none)"
	}
	return fmt.Sprintf("%s (%d users)", percent(s.Share), s.Users)
}

// change prints "old → new". Two long strings are shown around their first difference, so
// that a changed word of a long system prompt is seen.
func change(base, head json.RawMessage) string {
	var b, h string
	if json.Unmarshal(base, &b) == nil && json.Unmarshal(head, &h) == nil && (len(b) > maxShown || len(h) > maxShown) {
		at := 0
		for at < len(b) && at < len(h) && b[at] == h[at] {
			at++
		}
		// Back up to the start of the rune that differs, then keep some context before it.
		for at > 0 && !utf8.RuneStart(b[at]) {
			at--
		}
		start := max(0, at-maxShown/3)
		// Start at a word when one starts shortly after.
		if i := strings.IndexByte(b[start:at], ' '); start > 0 && i >= 0 && i < 15 {
			start += i + 1
		}
		for start > 0 && !utf8.RuneStart(b[start]) {
			start--
		}
		return excerpt(b, start) + " → " + excerpt(h, start)
	}
	return shown(base) + " → " + shown(head)
}

// maxShown is how many bytes of a long string are shown.
const maxShown = 90

func excerpt(s string, start int) string {
	end := min(len(s), start+maxShown)
	for end < len(s) && !utf8.RuneStart(s[end]) {
		end--
	}
	q, _ := json.Marshal(s[start:end])
	out := string(q)
	if start > 0 {
		out = "…" + out
	}
	if end < len(s) {
		out += "…"
	}
	return out
}

func shown(v json.RawMessage) string {
	if v == nil {
		return "(absent)"
	}
	return string(v)
}
