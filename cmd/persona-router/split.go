package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/persona-router/persona-router/internal/config"
)

func runSplit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("split", flag.ContinueOnError)
	var dirs config.Dirs
	sandbox := configFlags(fs, &dirs)
	contextName := fs.String("context", "", "the requests' context")
	metadata := fs.String("metadata", "{}", "the requests' metadata, as a JSON object")
	users := fs.Int("users", config.DefaultSplitUsers, fmt.Sprintf("how many distinct signed-in users to simulate (at most %d)", config.MaxSplitUsers))
	userKey := fs.String("user-key", "", `an expression over i (0, 1, …) giving each user's id, e.g. "cust-" + string(i); default "u-" + string(i)`)
	format := fs.String("format", "text", "text, or json")
	if done, err := parseFlags(fs, args, stderr); done {
		return err
	}
	fail := func(err error) error {
		fmt.Fprintln(stderr, err)
		return exitError{err}
	}
	if *format != "text" && *format != "json" {
		return fail(fmt.Errorf("--format must be text or json, got %q", *format))
	}
	in := config.SplitInput{Context: *contextName, Users: *users}
	var err error
	if in.Metadata, err = jsonObject("--metadata", *metadata); err != nil {
		return fail(err)
	}
	if *userKey != "" {
		if in.UserID, err = config.UserKey(*userKey); err != nil {
			return fail(fmt.Errorf("--user-key: %w", err))
		}
	}
	snap, err := load(dirs, getenv, *sandbox)
	if err != nil {
		return reportLoad(err, stderr)
	}
	sp, err := snap.Split(ctx, in)
	if err != nil {
		var invalid *config.InvalidInput
		if errors.As(err, &invalid) && strings.HasPrefix(err.Error(), "users must be") {
			return fail(err)
		}
		if errors.As(err, &invalid) {
			return fail(fmt.Errorf("the token endpoint would refuse this request (%s): %w", invalid.Code, err))
		}
		return fail(err)
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // conditions hold < and >
		return enc.Encode(sp)
	}
	return writeSplit(stdout, sp)
}

// writeSplit prints a split as three tables: rules, personas, overlays.
func writeSplit(w io.Writer, sp *config.Split) error {
	md, _ := json.Marshal(sp.Metadata)
	fmt.Fprintf(w, "%d users, context %q, metadata %s (configuration %s)\n", sp.Users, sp.Context, md, sp.ConfigVersion)
	rows := [][]string{{"rule", "persona", "users", "share", ""}}
	for _, r := range sp.Rules {
		rows = append(rows, []string{ruleName(r.Rule), r.Persona, strconv.Itoa(r.Users), percent(r.Share), shareNotes(r)})
	}
	writeTable(w, rows)
	rows = [][]string{{"persona", "users", "share"}}
	for _, p := range sp.Personas {
		rows = append(rows, []string{p.Persona, strconv.Itoa(p.Users), percent(p.Share)})
	}
	writeTable(w, rows)
	if len(sp.Overlays) == 0 {
		fmt.Fprintln(w, "\nno overlay rule applies to this context")
	} else {
		rows = [][]string{{"overlay", "users", "share", ""}}
		for _, o := range sp.Overlays {
			rows = append(rows, []string{ruleName(o.Rule), strconv.Itoa(o.Users), percent(o.Share), shareNotes(o)})
		}
		writeTable(w, rows)
	}
	if sp.RenderErrors > 0 {
		fmt.Fprintf(w, "\n%d users' persona could not be rendered; the first: %s\n", sp.RenderErrors, sp.RenderError)
	}
	return nil
}

// writeTable prints rows after a blank line, columns aligned; the users and share columns
// (counts and percentages) align right.
func writeTable(w io.Writer, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	fmt.Fprintln(w)
	for _, row := range rows {
		var b strings.Builder
		for i, cell := range row {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell))
			if i > 0 {
				b.WriteString("  ")
			}
			if h := rows[0][i]; h == "users" || h == "share" {
				b.WriteString(pad + cell)
			} else {
				b.WriteString(cell + pad)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

func percent(p float64) string { return strconv.FormatFloat(p, 'f', 1, 64) + "%" }

func ruleName(name *string) string {
	if name == nil {
		return "(default)"
	}
	return *name
}

// shareNotes says what a rule's bucket conditions promise beside what it got, and how often
// its `when` failed.
func shareNotes(r config.RuleShare) string {
	var notes []string
	if conditions, nominal, ok := r.Rollout(); ok {
		notes = append(notes, fmt.Sprintf("%s admits %g%% of bucket values; got %.1f%% of those reaching it (%d)", conditions, nominal, r.ShareOfReached, r.Reached))
	}
	if r.Failed > 0 {
		notes = append(notes, fmt.Sprintf("when failed for %d users", r.Failed))
	}
	if len(notes) == 0 {
		return ""
	}
	return strings.Join(notes, "; ")
}
