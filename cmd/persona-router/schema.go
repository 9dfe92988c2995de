package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/persona-router/persona-router/internal/catalogue"
	"github.com/persona-router/persona-router/internal/rules"
)

// schemas are the JSON Schemas `schema` prints, by the files they describe.
var schemas = map[string]func() map[string]any{
	"personas": catalogue.PersonaFileSchema,
	"rules":    rules.FileSchema,
}

const schemaUsage = `Usage: persona-router schema personas|rules

Prints the JSON Schema of persona files or of rule files, for editors:
  persona-router schema personas > persona.schema.json
  persona-router schema rules > rules.schema.json
`

// runSchema prints the JSON Schema of persona files or of rule files.
func runSchema(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("schema", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), schemaUsage) }
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return exitError{err}
	}
	schema, ok := schemas[fs.Arg(0)]
	if fs.NArg() != 1 || !ok {
		fmt.Fprint(stderr, schemaUsage)
		return exitError{fmt.Errorf("schema takes personas or rules, got %q", fs.Args())}
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	// Descriptions hold <persona> and the like: keep them readable.
	enc.SetEscapeHTML(false)
	return enc.Encode(schema())
}
