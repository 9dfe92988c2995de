package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/persona-router/persona-router/internal/catalogue"
)

type offline struct{}

func (offline) Load(url string) (any, error) { return nil, os.ErrNotExist }

// TestSchemaValidatesShippedFiles prints each schema as an editor would get it, and checks the
// shipped files against it.
func TestSchemaValidatesShippedFiles(t *testing.T) {
	t.Parallel()
	for what, glob := range map[string]string{"personas": "../../personas/*.yaml", "rules": "../../rules/*.yaml"} {
		stdout, stderr, err := runCLI(t, "schema", what)
		if err != nil || stderr != "" {
			t.Fatalf("schema %s: %v\n%s", what, err, stderr)
		}
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(stdout))
		if err != nil {
			t.Fatalf("schema %s printed no JSON: %v", what, err)
		}
		top := doc.(map[string]any)
		dialect, hasDialect := top["$schema"]
		title, hasTitle := top["title"].(string)
		id, hasID := top["$id"].(string)
		if !hasDialect || dialect != catalogue.Dialect || !hasTitle || title == "" || !hasID || id == "" {
			t.Errorf("schema %s lacks $schema, $id or title", what)
		}
		if !strings.Contains(stdout, "\n  \"$defs\": {\n") || strings.Contains(stdout, `\u003c`) {
			t.Errorf("schema %s is not indented JSON with readable text", what)
		}
		c := jsonschema.NewCompiler()
		c.UseLoader(offline{})
		if err := c.AddResource(id, doc); err != nil {
			t.Fatal(err)
		}
		s, err := c.Compile(id)
		if err != nil {
			t.Fatalf("schema %s does not compile: %v", what, err)
		}
		paths, _ := filepath.Glob(glob)
		if len(paths) < 3 {
			t.Fatalf("only %v match %s", paths, glob)
		}
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := yaml.Unmarshal(data, &v); err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(v)
			inst, _ := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err := s.Validate(inst); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		}
		if err := s.Validate(map[string]any{"avatarID": "x", "rule": []any{}}); err == nil {
			t.Errorf("schema %s accepted unknown keys", what)
		}
	}
}

func TestSchemaUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"schema"}, {"schema", "persona"}, {"schema", "rules", "personas"}} {
		stdout, stderr, err := runCLI(t, args...)
		if err == nil || stdout != "" || !strings.Contains(stderr, "Usage: persona-router schema personas|rules") {
			t.Errorf("%v: err=%v stdout=%q stderr=%q", args, err, stdout, stderr)
		}
	}
	if _, stderr, err := runCLI(t, "schema", "-h"); err != nil || !strings.Contains(stderr, "Usage:") {
		t.Errorf("schema -h: %v %s", err, stderr)
	}
	if stdout, _, _ := runCLI(t, "help"); !strings.Contains(stdout, "persona-router schema personas") || !strings.Contains(stdout, "persona-router schema rules") {
		t.Errorf("help does not list schema:\n%s", stdout)
	}
}
