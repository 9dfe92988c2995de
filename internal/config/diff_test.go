package config_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/expression"
)

// diffFiles is a configuration for diff tests; edits change one file of it.
var diffFiles = map[string]string{
	"personas/default.yaml": fmt.Sprintf(splitPersona, "default"),
	"personas/training.yaml": fmt.Sprintf(splitPersona, "Trainer") + `voiceDetectionOptions: {endOfSpeechSensitivity: 0.5}
tools:
  - {type: client, name: open_page, description: Opens a page}
  - {type: server, subtype: webhook, name: lookup, description: Looks up, url: "{{ sign('https://example.com/hook?u=' + (user.id ?? '')) }}", method: GET}
`,
	"rules/r.yaml": `metadata:
  tier: {type: string}
rules:
  - {name: training, when: 'context == "training"', persona: training}
  - {name: rollout, when: 'context == "sales" && bucket(user.id + ":v2") < 20', persona: training}
tests:
  - {name: trainees, request: {context: training, user: {id: u-1}}, expect: {persona: training}}
`,
}

func diffConfig(t *testing.T, edits map[string]string) *config.Snapshot {
	t.Helper()
	root := t.TempDir()
	for name, text := range diffFiles {
		if edit, ok := edits[name]; ok {
			text = edit
		}
		write(t, root, name, text)
	}
	dirs := dirsIn(root)
	dirs.SigningSecret = []byte("test-signing-secret-of-32-bytes!")
	snap, err := config.Load(dirs)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func TestDiff(t *testing.T) {
	base := diffConfig(t, nil)
	// A user the rollout gains when it widens from 20% to 30%, and the shares before and after.
	var gained string
	var before, after int
	for i := range 1000 {
		id := fmt.Sprintf("u-%d", i)
		b := expression.Bucket(id + ":v2")
		if b >= 20 && b < 30 && gained == "" {
			gained = id
		}
		if b < 20 {
			before++
		}
		if b < 30 {
			after++
		}
	}
	pct := func(n int) string { return fmt.Sprint(float64(n) / 10) }
	sales := []config.DiffRequest{{Source: "requests.jsonl:1", Input: inputOf("sales", nil, map[string]any{"id": gained})}}
	gainedTools := strings.ReplaceAll(toolsJSON, "u-1", gained)
	for _, tc := range []struct {
		name     string
		edits    map[string]string
		requests []config.DiffRequest
		// changes lists "source: path: base → head" for each changed field, and "split context:
		// kind name: base → head" for each moved share.
		changes []string
	}{
		{name: "nothing changed", changes: nil},
		{name: "a persona option", edits: map[string]string{
			"personas/training.yaml": strings.Replace(diffFiles["personas/training.yaml"], "0.5", "0.8", 1),
		}, changes: []string{`test "trainees": personaConfig.voiceDetectionOptions.endOfSpeechSensitivity: 0.5 → 0.8`}},
		{name: "a tool removed", edits: map[string]string{
			"personas/training.yaml": strings.Replace(diffFiles["personas/training.yaml"], "  - {type: client, name: open_page, description: Opens a page}\n", "", 1),
		}, changes: []string{
			`test "trainees": personaConfig.tools[0].description: "Opens a page" → "Looks up"`,
			`test "trainees": personaConfig.tools[0].method: (absent) → "GET"`,
			`test "trainees": personaConfig.tools[0].name: "open_page" → "lookup"`,
			`test "trainees": personaConfig.tools[0].subtype: (absent) → "webhook"`,
			`test "trainees": personaConfig.tools[0].type: "client" → "server"`,
			`test "trainees": personaConfig.tools[0].url: (absent) → "https://example.com/hook?u=u-1&uid=u-1&exp=…&sig=…"`,
			`test "trainees": personaConfig.tools[1]: {"description":"Looks up","method":"GET","name":"lookup","subtype":"webhook","type":"server","url":"https://example.com/hook?u=u-1&uid=u-1&exp=…&sig=…"} → (absent)`,
		}},
		{name: "the rollout widened", edits: map[string]string{
			"rules/r.yaml": strings.Replace(diffFiles["rules/r.yaml"], "< 20", "< 30", 1),
		}, requests: sales, changes: []string{
			`requests.jsonl:1: persona: "default" → "training"`,
			`requests.jsonl:1: rule: (absent) → "rollout"`,
			`requests.jsonl:1: clientLabel: "persona-router/default" → "persona-router/training/rollout"`,
			`requests.jsonl:1: personaConfig.name: "default" → "Trainer"`,
			`requests.jsonl:1: personaConfig.tools: (absent) → ` + gainedTools,
			`requests.jsonl:1: personaConfig.voiceDetectionOptions: (absent) → {"endOfSpeechSensitivity":0.5}`,
			"split sales: rule rollout: " + pct(before) + " → " + pct(after),
			"split sales: rule (default): " + pct(1000-before) + " → " + pct(1000-after),
			"split sales: persona default: " + pct(1000-before) + " → " + pct(1000-after),
			"split sales: persona training: " + pct(before) + " → " + pct(after),
		}},
		{name: "the metadata schema narrowed", edits: map[string]string{
			"rules/r.yaml": strings.Replace(diffFiles["rules/r.yaml"], "tier: {type: string}", "tier: {type: string, enum: [free, pro]}", 1),
		}, requests: []config.DiffRequest{{Source: "requests.jsonl:1", Input: inputOf("training", map[string]any{"tier": "gold"}, map[string]any{"id": "u-1"})}}, changes: []string{
			`requests.jsonl:1: refused: (absent) → "invalid_metadata: metadata.tier must be one of \"free\", \"pro\", got \"gold\""`,
			`requests.jsonl:1: persona: "training" → (absent)`,
			`requests.jsonl:1: rule: "training" → (absent)`,
			`requests.jsonl:1: overlays: [] → (absent)`,
			`requests.jsonl:1: request: {"clientLabel":"persona-router/training/training","personaConfig":{"avatarId":"30fa96d0-26c4-4e55-94a0-517025942e18","name":"Trainer","tools":` + toolsJSON + `,"voiceDetectionOptions":{"endOfSpeechSensitivity":0.5},"voiceId":"6bfbe25a-979d-40f3-a92b-5394170af54b"}} → (absent)`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head := diffConfig(t, tc.edits)
			d, err := config.Diff(context.Background(), base, head, tc.requests, 1000)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range d.ChangedRequests {
				for _, c := range r.Changes {
					source := r.Sources[0]
					if strings.HasPrefix(source, "test ") {
						source = source[:strings.Index(source, " (")]
					}
					got = append(got, fmt.Sprintf("%s: %s: %s → %s", source, c.Path, shown(c.Base), shown(c.Head)))
				}
			}
			for _, s := range d.ChangedSplits {
				for _, c := range s.Changes {
					name := "(default)"
					if c.Name != nil {
						name = *c.Name
					}
					got = append(got, fmt.Sprintf("split %s: %s %s: %v → %v", s.Context, c.Kind, name, c.Base.Share, c.Head.Share))
				}
			}
			if strings.Join(got, "\n") != strings.Join(tc.changes, "\n") {
				t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.changes, "\n"))
			}
			if d.Changed() != (len(tc.changes) > 0) {
				t.Errorf("Changed() = %v", d.Changed())
			}
			wantContexts := []string{"training"}
			if tc.requests != nil {
				wantContexts = []string{tc.requests[0].Input.Context}
				if wantContexts[0] != "training" {
					wantContexts = []string{wantContexts[0], "training"}
				}
			}
			if fmt.Sprint(d.Contexts) != fmt.Sprint(wantContexts) || d.Users != 1000 || d.Requests != 1+len(tc.requests) {
				t.Errorf("contexts %v, users %d, requests %d", d.Contexts, d.Users, d.Requests)
			}
		})
	}
}

const toolsJSON = `[{"description":"Opens a page","name":"open_page","type":"client"},{"description":"Looks up","method":"GET","name":"lookup","subtype":"webhook","type":"server","url":"https://example.com/hook?u=u-1&uid=u-1&exp=…&sig=…"}]`

func inputOf(context string, metadata, user map[string]any) expression.Input {
	return expression.Input{Context: context, Metadata: metadata, User: user}
}

func shown(v json.RawMessage) string {
	if v == nil {
		return "(absent)"
	}
	return string(v)
}

func TestReadRequests(t *testing.T) {
	for _, tc := range []struct {
		name, text, err string
		n               int
	}{
		{name: "good", text: "{\"context\": \"sales\", \"metadata\": {\"tier\": \"pro\"}, \"user\": {\"id\": \"u-1\"}}\n\n{}\n", n: 2},
		{name: "unknown key", text: "{}\n{\"contxt\": \"sales\"}\n", err: `requests.jsonl:2: expected one JSON object {"context", "metadata", "user"} per line: json: unknown field "contxt"`},
		{name: "not JSON", text: "{}\n\n{\"context\": \n", err: "requests.jsonl:3: expected one JSON object"},
		{name: "two values", text: "{} {}\n", err: "requests.jsonl:1: expected one JSON object {\"context\", \"metadata\", \"user\"} per line: more than one JSON value"},
		{name: "wrong type", text: "{\"user\": \"u-1\"}\n", err: "requests.jsonl:1: expected one JSON object"},
		{name: "too long", text: "{}\n{\"context\": \"" + strings.Repeat("x", 200<<10) + "\"}\n", err: "requests.jsonl:2: the line is over 128 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reqs, err := config.ReadRequests("requests.jsonl", strings.NewReader(tc.text))
			if tc.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
					t.Errorf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || len(reqs) != tc.n {
				t.Fatalf("%d requests, %v", len(reqs), err)
			}
			if reqs[0].Source != "requests.jsonl:1" || reqs[0].Input.Context != "sales" || reqs[0].Input.Metadata["tier"] != "pro" || reqs[0].Input.User["id"] != "u-1" ||
				reqs[1].Source != "requests.jsonl:3" || reqs[1].Input.Context != "" || reqs[1].Input.Metadata == nil {
				t.Errorf("requests = %+v", reqs)
			}
		})
	}
}
