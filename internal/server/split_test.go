package server

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/persona-router/persona-router/internal/config/configtest"
	"github.com/persona-router/persona-router/internal/expression"
)

func TestAdminSplit(t *testing.T) {
	snap := configtest.Load(t, map[string]string{
		"personas/default.yaml": "name: Cara\navatarId: 30fa96d0-26c4-4e55-94a0-517025942e18\nvoiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b\n",
		"rules/a.yaml": "metadata:\n  tier: {type: string, enum: [free, pro]}\n" +
			"rules:\n  - {name: v2, when: 'context == \"sales\" && metadata.tier == \"pro\" && bucket(user.id + \":v2\") < 20', persona: default}\n",
	})
	srv, err := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Configs: fixed{snap}, Anam: fakeMinter{},
		Metrics: NewMetrics(), AdminToken: "admin-token-for-tests"})
	if err != nil {
		t.Fatal(err)
	}
	ts := serveHTTP(t, srv, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	inRollout := func(n int) int {
		in := 0
		for i := range n {
			if expression.Bucket(fmt.Sprintf("u-%d:v2", i)) < 20 {
				in++
			}
		}
		return in
	}
	for _, tc := range []struct {
		name, body, auth string
		status           int
		code             string
		// users and v2 are the users simulated and those the rollout took.
		users, v2 int
	}{
		{name: "defaults", body: `{"context": "sales", "metadata": {"tier": "pro"}}`, status: 200, users: 10000, v2: inRollout(10000)},
		{name: "users", body: `{"context": "sales", "metadata": {"tier": "pro"}, "users": 300}`, status: 200, users: 300, v2: inRollout(300)},
		{name: "other metadata", body: `{"context": "sales", "metadata": {"tier": "free"}, "users": 300}`, status: 200, users: 300, v2: 0},
		{name: "the most users", body: `{"context": "sales", "users": 100000}`, status: 200, users: 100000, v2: 0},
		{name: "too many users", body: `{"context": "sales", "users": 100001}`, status: 400, code: "invalid_request"},
		{name: "no users", body: `{"users": 0}`, status: 400, code: "invalid_request"},
		{name: "fractional users", body: `{"users": 1.5}`, status: 400, code: "invalid_request"},
		{name: "users as a string", body: `{"users": "10"}`, status: 400, code: "invalid_request"},
		{name: "bad context", body: `{"context": "a b"}`, status: 400, code: "invalid_request"},
		{name: "unknown field", body: `{"user": {}}`, status: 400, code: "invalid_request"},
		{name: "metadata off the schema", body: `{"context": "sales", "metadata": {"tier": "gold"}}`, status: 422, code: "invalid_metadata"},
		{name: "no token", body: `{}`, auth: "-", status: 401, code: "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/admin/split", strings.NewReader(tc.body))
			if tc.auth == "" {
				req.Header.Set("Authorization", "Bearer admin-token-for-tests")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var body struct {
				Code  string
				Error string
				Users int
				Rules []struct {
					Rule  *string
					Users int
				}
			}
			if err := json.Unmarshal(raw, &body); err != nil || resp.StatusCode != tc.status || body.Code != tc.code {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, raw, tc.status, tc.code)
			}
			if tc.status != 200 {
				if tc.code == "invalid_request" && strings.Contains(tc.name, "users") && !strings.Contains(body.Error, "users must be a whole number from 1 to 100000") {
					t.Errorf("error = %q", body.Error)
				}
				return
			}
			if body.Users != tc.users || len(body.Rules) != 2 || *body.Rules[0].Rule != "v2" || body.Rules[0].Users != tc.v2 ||
				body.Rules[1].Rule != nil || body.Rules[1].Users != tc.users-tc.v2 {
				t.Errorf("split: %s", raw)
			}
		})
	}
}
