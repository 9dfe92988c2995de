package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/persona-router/persona-router/internal/anam"
	"github.com/persona-router/persona-router/internal/budget"
	"github.com/persona-router/persona-router/internal/config/configtest"
	"github.com/persona-router/persona-router/internal/identity"
)

// tokenConfig routes context "broken" to a persona whose name renders empty (a render
// failure), and counts one session a day, shared by everyone, for context "budget".
var tokenConfig = map[string]string{
	"personas/default.yaml": "name: Cara\navatarId: 30fa96d0-26c4-4e55-94a0-517025942e18\nvoiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b\nsystemPrompt: Be kind.\n",
	"personas/broken.yaml":  "extends: default\nname: \"{{ metadata.label ?? '' }}\"\n",
	"rules/a.yaml": `metadata:
  tier: {type: string, enum: [free, pro]}
  label: {type: string, maxLength: 20}
rules:
  - {name: broken, when: context == "broken", persona: broken}
  - {name: pro, when: metadata.tier == "pro", persona: default}
budgets:
  - {name: one-a-day, when: context == "budget", key: '"global"', window: day, sessions: 1}
`,
}

// scriptedMinter answers each call with the next of its answers (the last one repeats), and
// records what it was asked.
type scriptedMinter struct {
	mu      sync.Mutex
	answers []minted
	bodies  []string
}

type minted struct {
	token string
	err   error
}

var _ Minter = (*scriptedMinter)(nil)

func (m *scriptedMinter) CreateSessionToken(ctx context.Context, body anam.Body) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bodies = append(m.bodies, string(body.Bytes()))
	a := m.answers[min(len(m.bodies), len(m.answers))-1]
	if a.err == nil && ctx.Err() != nil {
		return "", ctx.Err()
	}
	return a.token, a.err
}

func (m *scriptedMinter) calls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.bodies)
}

// failingStore is a budget store that cannot answer.
type failingStore struct{}

var _ budget.Store = failingStore{}

func (failingStore) Reserve(context.Context, time.Time, []budget.Claim, int) (budget.Reservation, error) {
	return budget.Reservation{}, budget.ErrStore
}
func (failingStore) Release(context.Context, budget.Reservation) error { return budget.ErrStore }
func (failingStore) Remaining(context.Context, time.Time, []budget.Claim) ([]budget.Left, error) {
	return nil, budget.ErrStore
}

// refusingIdentity refuses every request, as a missing bearer token would be.
type refusingIdentity struct{}

func (refusingIdentity) Identify(*http.Request) (map[string]any, *identity.Failure) {
	return nil, &identity.Failure{Reason: "missing", Message: "no bearer token", Challenge: `Bearer realm="test"`}
}

// newTestServer builds a Server over tokenConfig; adjust may change its options.
func newTestServer(t *testing.T, minter Minter, adjust func(*Options)) *Server {
	t.Helper()
	opts := Options{
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Configs: fixed{configtest.Load(t, tokenConfig)},
		Anam:    minter,
		Metrics: NewMetrics(),
	}
	if adjust != nil {
		adjust(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// answer is one answer of the server: its status, headers and JSON body.
type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// post sends body to the token endpoint through the server's handler, with ctx as the
// request's context.
func post(t *testing.T, srv http.Handler, ctx context.Context, body string) answer {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/api/session-token", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	srv.ServeHTTP(rec, req)
	a := answer{status: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	if err := json.Unmarshal(rec.Body.Bytes(), &a.body); err != nil {
		t.Fatalf("answer %d %q is not a JSON object: %v", rec.Code, a.raw, err)
	}
	return a
}

// field returns a string field of the answer's body, failing the test when it is absent or
// not a string.
func (a answer) field(t *testing.T, key string) string {
	t.Helper()
	v, ok := a.body[key]
	if !ok {
		t.Fatalf("answer %d has no %q: %s", a.status, key, a.raw)
	}
	s, ok := v.(string)
	if !ok {
		t.Fatalf("answer %d: %q is %T, want a string: %s", a.status, key, v, a.raw)
	}
	return s
}

// wantError checks an error answer: status, code, a message, and the Retry-After header
// (none when retryAfter is empty).
func (a answer) wantError(t *testing.T, status int, code, retryAfter string) {
	t.Helper()
	if a.status != status {
		t.Errorf("status %d, want %d: %s", a.status, status, a.raw)
	}
	if got := a.field(t, "code"); got != code {
		t.Errorf("code %q, want %q: %s", got, code, a.raw)
	}
	if msg := a.field(t, "error"); msg == "" {
		t.Errorf("error message is empty: %s", a.raw)
	}
	if _, ok := a.body["sessionToken"]; ok {
		t.Errorf("an error answer carries a sessionToken: %s", a.raw)
	}
	if got := a.header.Get("Retry-After"); got != retryAfter {
		t.Errorf("Retry-After %q, want %q", got, retryAfter)
	}
}

func TestTokenSuccess(t *testing.T) {
	m := &scriptedMinter{answers: []minted{{token: "h.p.s"}}}
	srv := newTestServer(t, m, nil)
	a := post(t, srv, context.Background(), `{"context": "sales", "metadata": {"tier": "pro"}}`)
	if a.status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", a.status, a.raw)
	}
	if got := a.field(t, "sessionToken"); got != "h.p.s" {
		t.Errorf("sessionToken %q, want the minter's", got)
	}
	if got := a.field(t, "persona"); got != "default" {
		t.Errorf("persona %q, want default", got)
	}
	if got := a.field(t, "rule"); got != "pro" {
		t.Errorf("rule %q, want pro", got)
	}
	if got := a.field(t, "configVersion"); got == "" {
		t.Error("configVersion is empty")
	}
	if _, ok := a.body["code"]; ok {
		t.Errorf("a success carries a code: %s", a.raw)
	}
	if m.calls() != 1 || !strings.Contains(m.bodies[0], `"name":"Cara"`) {
		t.Errorf("the minter was asked %d times with %v, want once with the rendered persona", m.calls(), m.bodies)
	}
}

// Every refusal the token endpoint makes before it calls Anam, and every way an Anam call can
// fail, answers its documented status and code, and never calls Anam when it refuses first.
func TestTokenErrors(t *testing.T) {
	shuttingDown := func() context.Context {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(ErrShuttingDown)
		return ctx
	}
	for _, tc := range []struct {
		name       string
		body       string
		ctx        func() context.Context
		minted     minted
		adjust     func(*Options)
		status     int
		code       string
		retryAfter string
		// calls is how many times Anam must have been asked.
		calls int
	}{
		{name: "malformed JSON", body: `{"context": `, status: 400, code: "invalid_request"},
		{name: "not an object", body: `[1]`, status: 400, code: "invalid_request"},
		{name: "unknown field", body: `{"contxt": "sales"}`, status: 400, code: "invalid_request"},
		{name: "invalid context", body: `{"context": "a b"}`, status: 400, code: "invalid_request"},
		{name: "body too large", body: `{"context": "` + strings.Repeat("x", maxBody) + `"}`, status: 413, code: "body_too_large"},
		{name: "metadata breaks the schema", body: `{"metadata": {"tier": "gold"}}`, status: 422, code: "invalid_metadata"},
		{name: "undeclared metadata", body: `{"metadata": {"plan": "x"}}`, status: 422, code: "invalid_metadata"},
		{name: "no identity", body: `{}`, adjust: func(o *Options) { o.Identity = refusingIdentity{} }, status: 401, code: "unauthorized"},
		{name: "render failure", body: `{"context": "broken"}`, status: 500, code: "persona_render_failed"},
		{name: "store unavailable, deny", body: `{"context": "budget"}`, adjust: func(o *Options) { o.Budgets, o.DenyOnStoreError = failingStore{}, true }, status: 503, code: "store_unavailable"},
		{name: "anam auth failed", body: `{}`, minted: minted{err: &anam.Error{Kind: anam.AuthFailed, Status: 401, Attempts: 1}}, status: 502, code: "upstream_auth_failed", calls: 1},
		{name: "anam rejected", body: `{}`, minted: minted{err: &anam.Error{Kind: anam.Rejected, Status: 400, Attempts: 1, Detail: "avatarId unknown"}}, status: 502, code: "upstream_rejected", calls: 1},
		{name: "anam rate limited", body: `{}`, minted: minted{err: &anam.Error{Kind: anam.RateLimited, Status: 429, RetryAfter: 7 * time.Second, Attempts: 1}}, status: 429, code: "upstream_rate_limited", retryAfter: "7", calls: 1},
		{name: "anam rate limited, part of a second", body: `{}`, minted: minted{err: &anam.Error{Kind: anam.RateLimited, Status: 429, RetryAfter: 1500 * time.Millisecond, Attempts: 1}}, status: 429, code: "upstream_rate_limited", retryAfter: "2", calls: 1},
		{name: "anam timeout", body: `{}`, minted: minted{err: &anam.Error{Kind: anam.Timeout, Attempts: 2}}, status: 504, code: "upstream_timeout", calls: 1},
		{name: "anam unavailable", body: `{}`, minted: minted{err: &anam.Error{Kind: anam.Unavailable, Status: 503, Attempts: 3}}, status: 502, code: "upstream_unavailable", calls: 1},
		{name: "anam unreachable", body: `{}`, minted: minted{err: errors.New("dial tcp: connection refused")}, status: 502, code: "upstream_unavailable", calls: 1},
		{name: "shutting down", body: `{}`, ctx: shuttingDown, minted: minted{err: context.Canceled}, status: 503, code: "shutting_down", calls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &scriptedMinter{answers: []minted{tc.minted}}
			if tc.minted.token == "" && tc.minted.err == nil {
				m.answers[0].token = "h.p.s"
			}
			srv := newTestServer(t, m, tc.adjust)
			ctx := context.Background()
			if tc.ctx != nil {
				ctx = tc.ctx()
			}
			a := post(t, srv, ctx, tc.body)
			a.wantError(t, tc.status, tc.code, tc.retryAfter)
			if got := m.calls(); got != tc.calls {
				t.Errorf("Anam asked %d times, want %d", got, tc.calls)
			}
			if tc.minted.err != nil && strings.Contains(a.raw, "avatarId unknown") {
				t.Errorf("Anam's words reached the caller: %s", a.raw)
			}
		})
	}
}

func TestTokenBudgetExhausted(t *testing.T) {
	m := &scriptedMinter{answers: []minted{{token: "h.p.s"}}}
	srv := newTestServer(t, m, nil)
	if a := post(t, srv, context.Background(), `{"context": "budget"}`); a.status != http.StatusOK {
		t.Fatalf("first session: status %d, want 200: %s", a.status, a.raw)
	}
	a := post(t, srv, context.Background(), `{"context": "budget"}`)
	a.wantError(t, 429, "budget_exhausted", a.header.Get("Retry-After"))
	if !strings.Contains(a.field(t, "error"), "one-a-day") {
		t.Errorf("the refusal does not name the budget: %s", a.raw)
	}
	if ra := a.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q, want the seconds until the window resets", ra)
	}
	if got := m.calls(); got != 1 {
		t.Errorf("Anam asked %d times, want once (the refused request never reaches it)", got)
	}
}

// A failed Anam call gives its budget back: the next request gets the session.
func TestTokenFailedCallReleasesBudget(t *testing.T) {
	m := &scriptedMinter{answers: []minted{{err: &anam.Error{Kind: anam.Unavailable, Status: 502, Attempts: 3}}, {token: "h.p.s"}}}
	srv := newTestServer(t, m, nil)
	post(t, srv, context.Background(), `{"context": "budget"}`).wantError(t, 502, "upstream_unavailable", "")
	if a := post(t, srv, context.Background(), `{"context": "budget"}`); a.status != http.StatusOK {
		t.Fatalf("after a failed call: status %d, want 200 (the budget given back): %s", a.status, a.raw)
	}
}

// fakeAnam is Anam's session-token endpoint answering with the statuses of script in turn
// (the last repeats; an empty script answers 200); 200 carries token (default
// "anam.token.sig"). It records the requests it received, traceparent headers included ("" when
// absent).
type fakeAnam struct {
	script []int
	// retryAfter is the Retry-After of a 429.
	retryAfter   string
	token        string
	calls        atomic.Int32
	mu           sync.Mutex
	auth         []string
	bodies       []string
	traceparents []string
}

func (f *fakeAnam) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := int(f.calls.Add(1))
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.bodies = append(f.bodies, string(body))
	f.traceparents = append(f.traceparents, r.Header.Get("traceparent"))
	f.mu.Unlock()
	status := http.StatusOK
	if len(f.script) > 0 {
		status = f.script[min(n, len(f.script))-1]
	}
	w.Header().Set("Content-Type", "application/json")
	switch status {
	case 0: // no answer until the caller gives up
		<-r.Context().Done()
		return
	case http.StatusOK:
		token := f.token
		if token == "" {
			token = "anam.token.sig"
		}
		_, _ = io.WriteString(w, `{"sessionToken": "`+token+`"}`)
		return
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", f.retryAfter)
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, `{"message": "upstream-detail"}`)
}

// received is the traceparent header of every request, in order.
func (f *fakeAnam) received() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.traceparents...)
}

// End to end through the real Anam client against a fake Anam, with a millisecond backoff:
// retries, what is retried and what is not, and how each outcome reaches the caller.
func TestTokenThroughAnamClient(t *testing.T) {
	for _, tc := range []struct {
		name       string
		script     []int
		retryAfter string
		timeout    time.Duration
		status     int
		code       string
		wantAfter  string
		attempts   int32
	}{
		{name: "retries then success", script: []int{503, 500, 200}, status: 200, attempts: 3},
		{name: "5xx after every retry", script: []int{502}, status: 502, code: "upstream_unavailable", attempts: 3},
		{name: "4xx is not retried", script: []int{404}, status: 502, code: "upstream_rejected", attempts: 1},
		{name: "key refused", script: []int{401}, status: 502, code: "upstream_auth_failed", attempts: 1},
		{name: "rate limited", script: []int{429}, retryAfter: "12", status: 429, code: "upstream_rate_limited", wantAfter: "12", attempts: 1},
		{name: "rate limited without Retry-After", script: []int{429}, status: 429, code: "upstream_rate_limited", wantAfter: "1", attempts: 1},
		{name: "no answer in time", script: []int{0}, timeout: 50 * time.Millisecond, status: 504, code: "upstream_timeout", attempts: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeAnam{script: tc.script, retryAfter: tc.retryAfter}
			upstream := httptest.NewServer(fake)
			t.Cleanup(upstream.Close)
			client := anam.NewClient(upstream.URL, "test-api-key", upstream.Client(), 10*time.Second)
			client.Backoff, client.MaxBackoff = time.Millisecond, 2*time.Millisecond
			if tc.timeout > 0 {
				client.Timeout = tc.timeout
			}
			srv := newTestServer(t, client, nil)
			a := post(t, srv, context.Background(), `{"context": "sales"}`)
			if tc.status == http.StatusOK {
				if a.status != http.StatusOK {
					t.Fatalf("status %d, want 200: %s", a.status, a.raw)
				}
				if got := a.field(t, "sessionToken"); got != "anam.token.sig" {
					t.Errorf("sessionToken %q, want Anam's", got)
				}
			} else {
				a.wantError(t, tc.status, tc.code, tc.wantAfter)
				if strings.Contains(a.raw, "upstream-detail") {
					t.Errorf("Anam's words reached the caller: %s", a.raw)
				}
			}
			if got := fake.calls.Load(); got != tc.attempts {
				t.Errorf("Anam received %d requests, want %d", got, tc.attempts)
			}
			fake.mu.Lock()
			defer fake.mu.Unlock()
			for i, auth := range fake.auth {
				if auth != "Bearer test-api-key" {
					t.Errorf("request %d: Authorization %q, want the API key as a bearer token", i+1, auth)
				}
				if !strings.Contains(fake.bodies[i], `"personaConfig"`) {
					t.Errorf("request %d: body %s has no personaConfig", i+1, fake.bodies[i])
				}
			}
		})
	}
}
