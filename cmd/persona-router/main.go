// Command persona-router mints Anam session tokens for browsers, choosing the persona by
// routing rules, and checks and explains those rules for the people who write them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var exit exitError
		if !errors.As(err, &exit) {
			fmt.Fprintln(os.Stderr, "persona-router:", err)
		}
		os.Exit(1)
	}
}

// exitError ends the process with status 1 after its command already said why.
type exitError struct{ error }

const usage = `persona-router mints Anam session tokens routed by YAML rules.

Usage:
  persona-router [serve] [flags]   run the HTTP service (the default command)
  persona-router check [flags]     validate rules/ and personas/ and run the rule tests
  persona-router explain [flags]   show which persona a request gets, and why
  persona-router split [flags]     show how users divide among rules and personas
  persona-router diff [flags]      show what a configuration change changes
  persona-router schema personas   print the JSON Schema of persona files, for editors
  persona-router schema rules      print the JSON Schema of rule files, for editors

Run "persona-router COMMAND -h" for a command's flags.
`

// run is the whole program: main only wires the process to it, so tests can call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd, rest := "serve", args[1:]
	if len(rest) > 0 && len(rest[0]) > 0 && rest[0][0] != '-' {
		cmd, rest = rest[0], rest[1:]
	}
	switch cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stderr)
	case "check":
		return runCheck(rest, getenv, stdout, stderr)
	case "explain":
		return runExplain(rest, getenv, stdout, stderr)
	case "split":
		return runSplit(ctx, rest, getenv, stdout, stderr)
	case "diff":
		return runDiff(ctx, rest, getenv, stdout, stderr)
	case "schema":
		return runSchema(rest, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}
