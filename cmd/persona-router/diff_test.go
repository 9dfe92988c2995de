package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// diffFiles is the base configuration of the diff tests: a training persona with a signed
// webhook, a test, and a 20% rollout for sales.
var diffFiles = map[string]string{
	"personas/default.yaml": defaultPersona,
	"personas/training.yaml": defaultPersona + `voiceDetectionOptions: {endOfSpeechSensitivity: 0.5}
tools:
  - {type: server, subtype: webhook, name: lookup, description: Looks up, url: "{{ sign('https://example.com/hook') }}", method: GET}
`,
	"rules/r.yaml": `rules:
  - {name: training, when: 'context == "training" && user.id != nil', persona: training}
  - {name: rollout, when: 'context == "sales" && bucket(user.id + ":v2") < 20', persona: training}
tests:
  - {name: trainees, request: {context: training, user: {id: u-1}}, expect: {persona: training}}
`,
}

// edited returns diffFiles with one file's text changed.
func edited(name, old, new string) map[string]string {
	files := make(map[string]string)
	for k, v := range diffFiles {
		files[k] = v
	}
	files[name] = strings.Replace(files[name], old, new, 1)
	return files
}

func TestDiffCommand(t *testing.T) {
	t.Parallel()
	base := writeConfig(t, diffFiles)
	baseFlags := []string{"--base-rules", base[1], "--base-personas", base[3]}
	requests := filepath.Join(t.TempDir(), "requests.jsonl")
	if err := os.WriteFile(requests, []byte("{\"context\": \"training\", \"user\": {\"id\": \"u-7\"}}\n\n{\"context\": \"sales\", \"metadata\": {\"tier\": \"pro\"}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		head  map[string]string
		extra []string
		// want lists the lines stdout must have; changed is whether anything changed.
		want    []string
		changed bool
	}{
		{name: "same configuration", head: diffFiles, extra: []string{"--requests", requests}, want: []string{
			"base ", "→ ", ": 3 requests, 2 contexts × 1000 simulated users", "\nno changes\n",
		}},
		{name: "a persona option", head: edited("personas/training.yaml", "0.5", "0.8"), extra: []string{"--requests", requests}, changed: true, want: []string{
			`test "trainees" (`, `r.yaml:5:5): context "training", metadata {}, user {"id":"u-1"}`,
			"\n  personaConfig.voiceDetectionOptions.endOfSpeechSensitivity: 0.5 → 0.8\n",
			requests + `:1: context "training", metadata {}, user {"id":"u-7"}`,
			"\n2 requests and 0 splits changed\n",
		}},
		{name: "a wider rollout", head: edited("rules/r.yaml", "< 20", "< 30"), changed: true, want: []string{
			"\nsplit of context \"sales\" (500 users):\n  rule rollout: ",
			"\n  rule (default): ", "\n  persona default: ", "\n  persona training: ",
			"\n0 requests and 1 split changed\n",
		}, extra: []string{"--users", "500", "--requests", requests}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head := writeConfig(t, tc.head)
			for _, failOnChange := range []bool{false, true} {
				args := append(append(append([]string{"diff"}, baseFlags...), head...), tc.extra...)
				if failOnChange {
					args = append(args, "--fail-on-change")
				}
				stdout, stderr, err := runCLI(t, args...)
				if (err != nil) != (failOnChange && tc.changed) {
					t.Errorf("--fail-on-change=%v: err %v, stderr %q", failOnChange, err, stderr)
				}
				for _, w := range tc.want {
					if !strings.Contains(stdout, w) {
						t.Errorf("no %q in\n%s", w, stdout)
					}
				}
			}
		})
	}

	// JSON: the signed URL's exp and sig do not count as changes, whatever time each side ran.
	head := writeConfig(t, edited("personas/training.yaml", "0.5", "0.8"))
	stdout, stderr, err := runCLI(t, append(append(append([]string{"diff", "--format", "json"}, baseFlags...), head...), "--users", "10")...)
	if err != nil {
		t.Fatalf("diff --format json: %v\n%s", err, stderr)
	}
	var d struct {
		Users           int
		Contexts        []string
		ChangedRequests []struct {
			Sources []string
			Changes []struct {
				Path       string
				Base, Head json.RawMessage
			}
		}
		ChangedSplits []any
	}
	if err := json.Unmarshal([]byte(stdout), &d); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	if d.Users != 10 || len(d.Contexts) != 1 || len(d.ChangedRequests) != 1 || len(d.ChangedRequests[0].Changes) != 1 || d.ChangedSplits == nil {
		t.Fatalf("diff --format json:\n%s", stdout)
	}
	c := d.ChangedRequests[0].Changes[0]
	if c.Path != "personaConfig.voiceDetectionOptions.endOfSpeechSensitivity" || string(c.Base) != "0.5" || string(c.Head) != "0.8" {
		t.Errorf("change = %s: %s → %s", c.Path, c.Base, c.Head)
	}
}

func TestDiffCommandErrors(t *testing.T) {
	t.Parallel()
	base := writeConfig(t, diffFiles)
	baseFlags := []string{"--base-rules", base[1], "--base-personas", base[3]}
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	if err := os.WriteFile(bad, []byte("{}\n{\"context\": 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := writeConfig(t, edited("rules/r.yaml", "persona: training}\n  - {name: rollout", "persona: trainin}\n  - {name: rollout"))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no base", base, "--base-rules and --base-personas are required"},
		{"bad line", append(append([]string{"--requests", bad}, baseFlags...), base...), bad + ":2: expected one JSON object"},
		{"missing file", append(append([]string{"--requests", bad + ".none"}, baseFlags...), base...), "no such file"},
		{"too many users", append(append([]string{"--users", "100001"}, baseFlags...), base...), "--users must be from 1 to 100000"},
		{"base does not load", append([]string{"--base-rules", broken[1], "--base-personas", broken[3]}, base...), "base configuration (" + broken[1]},
		{"head does not load", append(baseFlags, broken...), "configuration rejected: 1 error(s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := runCLI(t, append([]string{"diff"}, tc.args...)...)
			if err == nil || !strings.Contains(stderr, tc.want) || stdout != "" {
				t.Errorf("err %v, stdout %q, stderr %q, want %q", err, stdout, stderr, tc.want)
			}
		})
	}
}
