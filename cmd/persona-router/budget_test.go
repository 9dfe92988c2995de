package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/persona-router/persona-router/internal/redistest"
)

// budgetPersonas are the personas of the budget tests: default sessions last ten minutes,
// "short" ones a second.
func budgetConfig(t *testing.T, budgets string) []string {
	t.Helper()
	return writeConfig(t, map[string]string{
		"personas/default.yaml": defaultPersona + "maxSessionLengthSeconds: 600\n",
		"personas/short.yaml":   "extends: default\nmaxSessionLengthSeconds: 1\n",
		"rules/a.yaml": `rules:
  - {name: short, when: 'context == "short"', persona: short}
budgets:
` + budgets,
	})
}

// Budgets end to end, over HTTP: sessions per window, minutes clamped then refused, open
// sessions freed when their reserved time is over, and a failed Anam call given back.
func TestBudgets(t *testing.T) {
	t.Parallel()
	token := func(s *instance, body string) answer {
		return s.post(t, "/api/session-token", []byte(body), "Content-Type", "application/json")
	}
	t.Run("sessions", func(t *testing.T) {
		u := newUpstream(t, nil)
		s := startService(t, map[string]string{"ANAM_API_KEY": testKey}, append(budgetConfig(t, "  - {name: daily, window: day, sessions: 2}\n"), "--anam-url", u.URL)...)
		for i := range 2 {
			if a := token(s, `{}`); a.status != http.StatusOK {
				t.Fatalf("request %d: %d %s", i+1, a.status, a.raw)
			}
		}
		a := token(s, `{}`)
		retry, _ := strconv.Atoi(a.header.Get("Retry-After"))
		msg, _ := a.body["error"].(string)
		if a.status != http.StatusTooManyRequests || a.body["code"] != "budget_exhausted" || retry < 1 || retry > 86400 || msg == "" || !strings.Contains(msg, `budget "daily"`) {
			t.Errorf("third request: %d %s (Retry-After %q), want 429 budget_exhausted naming daily", a.status, a.raw, a.header.Get("Retry-After"))
		}
		if len(u.requests()) != 2 {
			t.Errorf("Anam was called %d times, want 2", len(u.requests()))
		}
		if got := s.metric(t, `persona_router_budget_refusals_total{budget="daily"}`); got != 1 {
			t.Errorf("refusals metric = %v, want 1", got)
		}
	})
	t.Run("minutes are clamped, then refused", func(t *testing.T) {
		u := newUpstream(t, nil)
		s := startService(t, map[string]string{"ANAM_API_KEY": testKey}, append(budgetConfig(t, "  - {name: quarter-hour, window: day, minutes: 15}\n"), "--anam-url", u.URL)...)
		for i, want := range []float64{600, 300} {
			if a := token(s, `{}`); a.status != http.StatusOK {
				t.Fatalf("request %d: %d %s", i+1, a.status, a.raw)
			}
			pc := u.requests()[i].body["personaConfig"].(map[string]any)
			if got := pc["maxSessionLengthSeconds"]; got != want {
				t.Errorf("request %d: maxSessionLengthSeconds = %v, want %v", i+1, got, want)
			}
		}
		if a := token(s, `{}`); a.status != http.StatusTooManyRequests || a.body["code"] != "budget_exhausted" {
			t.Errorf("with 0 s left: %d %s, want 429", a.status, a.raw)
		}
	})
	t.Run("open sessions", func(t *testing.T) {
		u := newUpstream(t, nil)
		s := startService(t, map[string]string{"ANAM_API_KEY": testKey}, append(budgetConfig(t, "  - {name: one-at-a-time, concurrent: 1}\n"), "--anam-url", u.URL)...)
		if a := token(s, `{"context": "short"}`); a.status != http.StatusOK {
			t.Fatalf("first: %d %s", a.status, a.raw)
		}
		if a := token(s, `{"context": "short"}`); a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") != "1" {
			t.Errorf("second while the first is open: %d %s, want 429 with Retry-After 1", a.status, a.raw)
		}
		time.Sleep(1100 * time.Millisecond) // the first session's reserved second is over
		if a := token(s, `{"context": "short"}`); a.status != http.StatusOK {
			t.Errorf("after the first session's time: %d %s, want 200", a.status, a.raw)
		}
	})
	t.Run("a failed Anam call gives the budget back", func(t *testing.T) {
		u := newUpstream(t, func(n int, w http.ResponseWriter, _ *http.Request) {
			if n == 0 {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"sessionToken": "h.p%d.s"}`, n)
		})
		s := startService(t, map[string]string{"ANAM_API_KEY": testKey, "ADMIN_TOKEN": adminToken}, append(budgetConfig(t, "  - {name: once, window: day, sessions: 1}\n"), "--anam-url", u.URL)...)
		if a := token(s, `{}`); a.status != http.StatusBadGateway {
			t.Fatalf("Anam refusing: %d %s, want 502", a.status, a.raw)
		}
		a := s.post(t, "/admin/explain", []byte(`{}`), "Authorization", "Bearer "+adminToken)
		budgets, _ := a.body["budgets"].([]any)
		b, _ := budgets[0].(map[string]any)
		left, _ := b["remaining"].(map[string]any)
		if len(budgets) != 1 || b["name"] != "once" || b["key"] != "ip:127.0.0.1" || left["sessions"] != 1.0 || left["concurrent"] != -1.0 {
			t.Errorf("explain budgets after the refund: %s", a.raw)
		}
		if a := token(s, `{}`); a.status != http.StatusOK {
			t.Errorf("after the refund: %d %s, want 200", a.status, a.raw)
		}
		a = s.post(t, "/admin/explain", []byte(`{}`), "Authorization", "Bearer "+adminToken)
		budgets, _ = a.body["budgets"].([]any)
		b, _ = budgets[0].(map[string]any)
		left, _ = b["remaining"].(map[string]any)
		if sessions, ok := left["sessions"]; !ok || sessions != 0.0 {
			t.Errorf("explain budgets after a session: %s, want 0 sessions left", a.raw)
		}
	})
}

// With --redis-url, a token request with two budgets and a rate limit costs one round trip to
// Redis: one script takes the rate limit and spends both budgets.
func TestOneRoundTripToRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	// scripts counts the scripts Redis has run for clients: commandstats also counts the
	// commands a script runs, and the pool opens connections in the background.
	scripts := func() int {
		t.Helper()
		info, err := rdb.Info(context.Background(), "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, line := range strings.Split(info, "\n") {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
			if ok && (name == "cmdstat_evalsha" || name == "cmdstat_eval") {
				v, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
				n += v
			}
		}
		return n
	}
	u := newUpstream(t, nil)
	flags := budgetConfig(t, "  - {name: daily, window: day, sessions: 100, minutes: 1000}\n  - {name: account, key: '\"global\"', concurrent: 100}\n")
	s := startService(t, map[string]string{"ANAM_API_KEY": testKey}, append(flags, "--anam-url", u.URL, "--redis-url", srv.URL(), "--rate-limit", "100/min", "--redis-timeout", slowMachine)...)
	token := func() {
		t.Helper()
		if a := s.post(t, "/api/session-token", []byte(`{}`)); a.status != http.StatusOK {
			t.Fatalf("token: %d %s", a.status, a.raw)
		}
	}
	token() // connects and loads the script
	before := scripts()
	token()
	if got := scripts() - before; got != 1 {
		t.Errorf("a token request ran %d scripts in Redis, want 1 (one script for the rate limit and both budgets)", got)
	}
	left, _ := rdb.Keys(context.Background(), "persona-router:*").Result()
	if len(left) != 3 {
		t.Errorf("Redis keys = %v, want the rate limit, the daily counter and the account's open sessions", left)
	}
}
