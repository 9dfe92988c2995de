package main

import (
	ctx "context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/persona-router/persona-router/internal/budget"
	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/source"
)

// configFlags registers --rules, --personas and --sandbox.
func configFlags(fs *flag.FlagSet, dirs *config.Dirs) (sandbox *bool) {
	fs.StringVar(&dirs.Rules, "rules", "./rules", "directory of rule files")
	fs.StringVar(&dirs.Personas, "personas", "./personas", "directory of persona templates")
	return fs.Bool("sandbox", false, "sign() uses the public development secret when TOOL_SIGNING_SECRET is not set, as serve --sandbox does")
}

// load loads the configuration as `serve` would, with the signing secret from the environment.
// A bad secret is an error of its own; a configuration that does not load gives source.Errors.
func load(dirs config.Dirs, getenv func(string) string, sandbox bool) (*config.Snapshot, error) {
	if err := signingSecret(&dirs, getenv, sandbox); err != nil {
		return nil, err
	}
	return config.Load(dirs)
}

// parseFlags parses a subcommand's flags; -h prints them and ends the command successfully.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (done bool, err error) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return true, exitError{err}
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return true, exitError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return false, nil
}

// reportLoad prints every load error, one per line, and turns them into an exitError.
func reportLoad(err error, stderr io.Writer) error {
	errs := source.AsErrors(err)
	secret := false
	for _, e := range errs {
		fmt.Fprintln(stderr, e.Error())
		secret = secret || strings.Contains(e.Msg, "TOOL_SIGNING_SECRET")
	}
	if secret {
		fmt.Fprintln(stderr, "(to check a configuration without the secret, --sandbox signs with the public development secret)")
	}
	fmt.Fprintf(stderr, "configuration rejected: %d error(s)\n", len(errs))
	return exitError{err}
}

// diagnostic is one problem `check --format json` reports.
type diagnostic struct {
	File     string `json:"file"`
	Line     int    `json:"line"`
	Column   int    `json:"column"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
	Code     string `json:"code"`
}

func diagnosticOf(e *source.Error, severity string) diagnostic {
	code := e.Code
	if code == "" {
		code = source.CodeConfiguration
	}
	return diagnostic{File: e.Pos.Path, Line: e.Pos.Line, Column: e.Pos.Col, Severity: severity, Message: e.Msg, Code: code}
}

func runCheck(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	var dirs config.Dirs
	sandbox := configFlags(fs, &dirs)
	requireCoverage := fs.Bool("require-coverage", false, "fail when a rule is reached by no rule test")
	format := fs.String("format", "text", "text, or json: every diagnostic as a JSON array on stdout, for editors and CI annotations")
	if done, err := parseFlags(fs, args, stderr); done {
		return err
	}
	if *format != "text" && *format != "json" {
		err := fmt.Errorf("--format must be text or json, got %q", *format)
		fmt.Fprintln(stderr, err)
		return exitError{err}
	}
	snap, err := load(dirs, getenv, *sandbox)
	var errs, warnings source.Errors
	if err != nil {
		errs = source.AsErrors(err)
	} else {
		for _, r := range snap.Uncovered() {
			e := source.Errorf(r.Pos, "rule %q is reached by no rule test", r.Name)
			e.Code = source.CodeUncoveredRule
			if *requireCoverage {
				errs.Add(e)
			} else {
				warnings.Add(e)
			}
		}
		warnings.Add(config.SaltWarnings(snap)...)
	}
	if *format == "json" {
		out := make([]diagnostic, 0, len(errs)+len(warnings))
		for _, e := range errs {
			out = append(out, diagnosticOf(e, "error"))
		}
		for _, e := range warnings {
			out = append(out, diagnosticOf(e, "warning"))
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
		if len(errs) > 0 {
			return exitError{errs}
		}
		return nil
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "%s: warning: %s\n", w.Pos, w.Msg)
	}
	if len(errs) > 0 {
		return reportLoad(errs, stderr)
	}
	fmt.Fprintf(stdout, "ok: %d personas, %d rules, %d tests passed, %d rules untested (version %s)\n",
		len(snap.PersonaIDs()), len(snap.Rules()), snap.Tests(), len(snap.Uncovered()), snap.Version)
	return nil
}

func runExplain(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	var dirs config.Dirs
	sandbox := configFlags(fs, &dirs)
	context := fs.String("context", "", "the request's context")
	metadata := fs.String("metadata", "{}", "the request's metadata, as a JSON object")
	user := fs.String("user", "{}", `the signed-in user, as a JSON object (e.g. {"id": "u1"})`)
	all := fs.Bool("all", false, "also list the rules the context index skipped")
	if done, err := parseFlags(fs, args, stderr); done {
		return err
	}
	in := expression.Input{Context: *context}
	var err error
	if in.Metadata, err = jsonObject("--metadata", *metadata); err != nil {
		fmt.Fprintln(stderr, err)
		return exitError{err}
	}
	if in.User, err = jsonObject("--user", *user); err != nil {
		fmt.Fprintln(stderr, err)
		return exitError{err}
	}
	if err := signingSecret(&dirs, getenv, *sandbox); err != nil {
		return reportLoad(err, stderr)
	}
	// Failing rule tests do not stop explain: that is when an author needs it most.
	snap, failing, err := config.LoadForExplain(dirs)
	if err != nil {
		return reportLoad(err, stderr)
	}
	for _, f := range failing {
		fmt.Fprintf(stderr, "%s: warning: %s\n", f.Pos, f.Msg)
	}
	e := snap.Explain(in, *all)
	// Nothing is spent yet from the command line: budgets show what a fresh window allows.
	if err := snap.ExplainBudgets(ctx.Background(), &e, in, budget.NewMemory(), "ip:127.0.0.1"); err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(e); err != nil {
		return err
	}
	switch {
	case e.Refused != nil:
		msg := fmt.Sprintf("the token endpoint would refuse this request: %d %s: %s", e.Refused.Status, e.Refused.Code, e.Refused.Error)
		fmt.Fprintln(stderr, msg)
		return exitError{errors.New(msg)}
	case e.Error != "":
		fmt.Fprintf(stderr, "persona %q cannot be rendered for this request: %s\n", e.Persona, e.Error)
		return exitError{errors.New(e.Error)}
	}
	return nil
}

// jsonObject decodes a flag's JSON object; null and the empty string mean an empty object.
func jsonObject(flagName, text string) (map[string]any, error) {
	if text == "" {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(strings.NewReader(text))
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s must be a JSON object, like {\"key\": \"value\"}: %s", flagName, jsonProblem(err))
	}
	if dec.More() {
		return nil, fmt.Errorf("%s must be a single JSON object, found more after it", flagName)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// jsonProblem says what is wrong with a flag's JSON without Go's type names.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "got a JSON " + te.Value
	}
	return err.Error()
}
