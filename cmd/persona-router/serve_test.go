package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// instance is persona-router running through run() on a loopback port.
type instance struct {
	url  string
	logs *syncBuffer
	stop func() error
}

// testSigningSecret is TOOL_SIGNING_SECRET in the tests' environment.
const testSigningSecret = "test-signing-secret-of-32-bytes!"

// startService runs the program with args and env, waits until it listens — its --addr-file
// names the address — and stops it when the test ends (checking it exits cleanly).
func startService(t *testing.T, env map[string]string, args ...string) *instance {
	t.Helper()
	joined := strings.Join(args, " ")
	if !strings.Contains(joined, "--anam-url") && !strings.Contains(joined, "--sandbox") && env["ANAM_BASE_URL"] == "" {
		t.Fatal("a test service must use a fake Anam (--anam-url or --sandbox): tests never call the real one")
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	if _, ok := env["TOOL_SIGNING_SECRET"]; !ok {
		env["TOOL_SIGNING_SECRET"] = testSigningSecret // the shipped customer-support persona signs
	}
	getenv := func(k string) string { return env[k] }
	addrFile := filepath.Join(t.TempDir(), "addr")
	go func() {
		done <- run(ctx, append([]string{"persona-router", "serve", "--addr", "127.0.0.1:0", "--addr-file", addrFile}, args...), getenv, io.Discard, logs)
	}()
	addr, err := waitAddrFile(addrFile, done)
	if err != nil {
		cancel()
		t.Fatalf("%v\n%s", err, logs.String())
	}
	s := &instance{url: "http://" + addr, logs: logs}
	var once sync.Once
	var stopErr error
	s.stop = func() error {
		once.Do(func() { cancel(); stopErr = <-done })
		return stopErr
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("service exited with %v", err)
		}
	})
	s.waitHealthy(t)
	return s
}

// waitAddrFile waits until the service writes its address to path, or exits (done).
func waitAddrFile(path string, done <-chan error) (string, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil {
			return strings.TrimSpace(string(b)), nil
		}
		select {
		case err := <-done:
			return "", fmt.Errorf("service exited before listening: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return "", errors.New("service did not start")
		}
	}
}

func (s *instance) waitHealthy(t *testing.T) {
	t.Helper()
	for range 100 {
		resp, err := http.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("/healthz never answered 200")
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// post sends body (nil for no body at all) with the given headers.
func (s *instance) post(t *testing.T, path string, body []byte, headers ...string) answer {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(http.MethodPost, s.url+path, r)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// upstream is a fake Anam over real HTTP that records what it receives and answers as its
// script says.
type upstream struct {
	*httptest.Server
	mu       sync.Mutex
	received []received
	// answer handles the n-th request (from 0); nil answers with a sandbox-style token.
	answer func(n int, w http.ResponseWriter, r *http.Request)
}

type received struct {
	header http.Header
	body   map[string]any
}

func newUpstream(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *upstream {
	u := &upstream{answer: answer}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		u.mu.Lock()
		n := len(u.received)
		u.received = append(u.received, received{header: r.Header.Clone(), body: body})
		u.mu.Unlock()
		if r.URL.Path != "/v1/auth/session-token" || r.Method != http.MethodPost {
			http.Error(w, "wrong endpoint", http.StatusNotFound)
			return
		}
		if u.answer == nil {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"sessionToken": "tok-header.tok-payload-%d.tok-signature"}`, n)
			return
		}
		u.answer(n, w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) requests() []received {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]received(nil), u.received...)
}

const testKey = "sk-test-4f1b9c0e-very-secret"

func startWithUpstream(t *testing.T, u *upstream, env map[string]string, args ...string) *instance {
	t.Helper()
	if env == nil {
		env = map[string]string{}
	}
	if _, ok := env["ANAM_API_KEY"]; !ok {
		env["ANAM_API_KEY"] = testKey
	}
	return startService(t, env, append([]string{"--anam-url", u.URL, "--rules", "../../rules", "--personas", "../../personas"}, args...)...)
}

func TestTokenWithoutBodyGetsTheDefaultPersona(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, nil)
	s := startWithUpstream(t, u, nil)
	a := s.post(t, "/api/session-token", nil)
	if a.status != http.StatusOK || a.body["persona"] != "default" || a.body["sessionToken"] != "tok-header.tok-payload-0.tok-signature" {
		t.Fatalf("answer %d %s", a.status, a.raw)
	}
	if rule, has := a.body["rule"]; !has || rule != nil {
		t.Errorf("answer %s, want \"rule\": null for the default persona", a.raw)
	}
	if a.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", a.header.Get("Cache-Control"))
	}
	if a.header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id in the answer")
	}
	reqs := u.requests()
	if len(reqs) != 1 {
		t.Fatalf("Anam received %d requests, want 1", len(reqs))
	}
	got := reqs[0]
	if got.header.Get("Authorization") != "Bearer "+testKey || got.header.Get("Content-Type") != "application/json" {
		t.Errorf("Anam received headers %v", got.header)
	}
	pc, _ := got.body["personaConfig"].(map[string]any)
	want := map[string]any{
		"name": "Cara", "avatarId": "30fa96d0-26c4-4e55-94a0-517025942e18", "voiceId": "6bfbe25a-979d-40f3-a92b-5394170af54b",
		"llmId": "0934d97d-0c3a-4f33-91b0-5e136a0ef466", "languageCode": "en", "maxSessionLengthSeconds": 900.0,
	}
	for k, v := range want {
		if pc[k] != v {
			t.Errorf("personaConfig.%s = %v, want %v", k, pc[k], v)
		}
	}
	if p, _ := pc["systemPrompt"].(string); !strings.HasPrefix(p, "You are Cara, the virtual assistant of our company, speaking with a visitor.") {
		t.Errorf("systemPrompt = %q", p)
	}
	for _, absent := range []string{"personaId", "avatarModel", "skipGreeting"} {
		if _, ok := pc[absent]; ok {
			t.Errorf("personaConfig has %s, want empty optional fields left out", absent)
		}
	}
	if got.body["clientLabel"] != "persona-router/default" {
		t.Errorf("clientLabel = %v", got.body["clientLabel"])
	}
}

func TestTokenRoutesByContextAndMetadata(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, nil)
	s := startWithUpstream(t, u, nil, "--auth", "header")
	a := s.post(t, "/api/session-token", []byte(`{"context": "customer-support", "metadata": {"tier": "enterprise", "product": "Atlas", "region": "EU"}}`),
		"Content-Type", "application/json", "X-Forwarded-User", "u-42")
	if a.status != http.StatusOK || a.body["persona"] != "enterprise-support" {
		t.Fatalf("answer %d %s", a.status, a.raw)
	}
	// The answer and the log line say which rule and which configuration served it.
	version, ok := a.body["configVersion"].(string)
	if rule, has := a.body["rule"]; !has || rule != "enterprise-support" || !ok || len(version) != 12 {
		t.Errorf("answer %s, want rule enterprise-support and a 12-digit configVersion", a.raw)
	}
	if !strings.Contains(s.logs.String(), `"rule":"enterprise-support","config_version":"`+version+`"`) {
		t.Errorf("the request log line lacks the rule and config_version:\n%s", s.logs.String())
	}
	body := u.requests()[0].body
	pc := body["personaConfig"].(map[string]any)
	if pc["name"] != "Cara, Senior Support Engineer" || pc["maxSessionLengthSeconds"] != 3600.0 ||
		!strings.Contains(pc["systemPrompt"].(string), "senior support engineer for Atlas") || pc["zeroDataRetention"] != true {
		t.Errorf("personaConfig = %v", pc)
	}
	if body["clientLabel"] != "persona-router/enterprise-support/enterprise-support" {
		t.Errorf("clientLabel = %v", body["clientLabel"])
	}
	if so, _ := json.Marshal(body["sessionOptions"]); string(so) != `{"sessionReplay":{"enableSessionReplay":false}}` {
		t.Errorf("sessionOptions = %s", so)
	}
	// The order-lookup webhook inherited from customer-support carries a URL signed for this
	// user, which a webhook written from Anam's recipe verifies with the secret.
	tools, _ := pc["tools"].([]any)
	if len(tools) != 2 {
		t.Fatalf("tools = %v, want the knowledge base and the order lookup", pc["tools"])
	}
	hook, _ := tools[1].(map[string]any)
	raw, _ := hook["url"].(string)
	signed, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("webhook url %q: %v", raw, err)
	}
	q := signed.Query()
	mac := hmac.New(sha256.New, []byte(testSigningSecret))
	fmt.Fprintf(mac, "%s|%s|%s", "https://orders.example.com/anam/lookup-order", q.Get("uid"), q.Get("exp"))
	exp, _ := strconv.ParseInt(q.Get("exp"), 10, 64)
	if q.Get("uid") != "u-42" || !hmac.Equal([]byte(q.Get("sig")), []byte(hex.EncodeToString(mac.Sum(nil)))) ||
		exp <= time.Now().Unix() || exp > time.Now().Add(time.Hour+time.Minute).Unix() {
		t.Errorf("webhook url %q is not signed for u-42 with the secret, for an hour", raw)
	}
	// Visitors who are not signed in get support without the tools.
	a = s.post(t, "/api/session-token", []byte(`{"context": "customer-support"}`), "Content-Type", "application/json")
	if a.status != http.StatusUnauthorized {
		t.Fatalf("anonymous in header mode: %d %s", a.status, a.raw)
	}
}

func TestAnonymousSupportHasNoTools(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, nil)
	s := startWithUpstream(t, u, nil)
	a := s.post(t, "/api/session-token", []byte(`{"context": "customer-support", "metadata": {"tier": "enterprise"}}`), "Content-Type", "application/json")
	if a.status != http.StatusOK || a.body["persona"] != "customer-support" {
		t.Fatalf("answer %d %s", a.status, a.raw)
	}
	if rule, has := a.body["rule"]; !has || rule != "support-guest" {
		t.Errorf("answer %s, want rule support-guest", a.raw)
	}
	pc := u.requests()[0].body["personaConfig"].(map[string]any)
	if _, ok := pc["tools"]; ok || pc["name"] != "Cara from Support" {
		t.Errorf("personaConfig = %v, want front-line support without tools", pc)
	}
	if label := u.requests()[0].body["clientLabel"]; label != "persona-router/customer-support/support-guest" {
		t.Errorf("clientLabel = %v", label)
	}
	// The French overlay changes the persona the guest rule chose, and the log line says so.
	a = s.post(t, "/api/session-token", []byte(`{"context": "customer-support", "metadata": {"locale": "fr"}}`), "Content-Type", "application/json")
	if a.status != http.StatusOK || a.body["persona"] != "customer-support" {
		t.Fatalf("answer %d %s", a.status, a.raw)
	}
	pc = u.requests()[1].body["personaConfig"].(map[string]any)
	guest := u.requests()[0].body["personaConfig"].(map[string]any)["systemPrompt"].(string)
	if pc["languageCode"] != "fr" || pc["systemPrompt"] != guest+" Always answer in French, whatever language the user writes in." {
		t.Errorf("personaConfig with the French overlay = %v", pc)
	}
	if !strings.Contains(s.logs.String(), `"overlays":["french"]`) {
		t.Errorf("the request log line does not name the overlay:\n%s", s.logs.String())
	}
}

func TestTokenRequestErrors(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, nil)
	s := startWithUpstream(t, u, nil)
	for _, tc := range []struct {
		name, body, code, message string
		status                    int
	}{
		{"malformed JSON", `{"context": `, "invalid_request", "not valid JSON", 400},
		{"not an object", `["sales"]`, "invalid_request", "must be a JSON object", 400},
		{"context not a string", `{"context": 7}`, "invalid_request", "context must be a string", 400},
		{"metadata not an object", `{"metadata": "tier=pro"}`, "invalid_request", "metadata must be a JSON object", 400},
		{"metadata a list", `{"metadata": [1]}`, "invalid_request", "metadata must be a JSON object", 400},
		{"unknown field", `{"contxt": "sales"}`, "invalid_request", `unknown field "contxt"`, 400},
		{"trailing data", `{} {}`, "invalid_request", "data after the JSON object", 400},
		{"over 64 KiB", `{"metadata": {"x": "` + strings.Repeat("a", 64<<10) + `"}}`, "body_too_large", "over 64 KiB", 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := s.post(t, "/api/session-token", []byte(tc.body), "Content-Type", "application/json")
			if a.status != tc.status || a.body["code"] != tc.code || !strings.Contains(fmt.Sprint(a.body["error"]), tc.message) {
				t.Errorf("answer %d %s, want %d %s containing %q", a.status, a.raw, tc.status, tc.code, tc.message)
			}
		})
	}
	if n := len(u.requests()); n != 0 {
		t.Errorf("Anam received %d requests for bad input, want 0", n)
	}
}

func TestTokenRenderFailure(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, nil)
	flags := writeConfig(t, map[string]string{"personas/default.yaml": defaultPersona + `maxSessionLengthSeconds: "{{ metadata.max }}"
tools:
  - {type: client, name: a, description: d}
  - {type: server, subtype: webhook, name: b, description: d, url: "{{ metadata.hook ?? 'https://hooks.example.com/b' }}"}
`})
	s := startService(t, map[string]string{"ANAM_API_KEY": testKey}, append([]string{"--anam-url", u.URL}, flags...)...)
	for _, tc := range []struct{ metadata, log string }{
		{`{"avatar": "not-a-uuid"}`, `avatarId must be a UUID`},
		{`{"max": "1800"}`, `maxSessionLengthSeconds must be a positive integer, got \"1800\"`},
		{`{"max": 0}`, `maxSessionLengthSeconds must be a positive integer, got 0`},
		{`{"hook": "http://hooks.example.com/b"}`, `tools[1].url must use https://`},
	} {
		a := s.post(t, "/api/session-token", []byte(`{"metadata": `+tc.metadata+`}`))
		if a.status != http.StatusInternalServerError || a.body["code"] != "persona_render_failed" {
			t.Fatalf("%s: answer %d %s", tc.metadata, a.status, a.raw)
		}
		if strings.Contains(a.raw, "not-a-uuid") || strings.Contains(a.raw, "hooks.example.com") {
			t.Errorf("answer repeats the rendered value: %s", a.raw)
		}
		if !strings.Contains(s.logs.String(), tc.log) {
			t.Errorf("log does not say %s:\n%s", tc.log, s.logs.String())
		}
	}
	if len(u.requests()) != 0 {
		t.Error("Anam was called for a persona that cannot be rendered")
	}
	if a := s.post(t, "/api/session-token", []byte(`{"metadata": {"max": 1800}}`)); a.status != http.StatusOK {
		t.Errorf("a valid rendering: %d %s", a.status, a.raw)
	}
	if got := u.requests()[0].body["personaConfig"].(map[string]any)["maxSessionLengthSeconds"]; got != 1800.0 {
		t.Errorf("maxSessionLengthSeconds = %v, want 1800 (a number, as the placeholder gave it)", got)
	}
}

func TestTokenUpstreamErrors(t *testing.T) {
	t.Parallel()
	jsonError := func(status int, body string, headers ...string) func(int, http.ResponseWriter, *http.Request) {
		return func(_ int, w http.ResponseWriter, _ *http.Request) {
			for i := 0; i+1 < len(headers); i += 2 {
				w.Header().Set(headers[i], headers[i+1])
			}
			w.WriteHeader(status)
			io.WriteString(w, body)
		}
	}
	hangUp := func(_ int, w http.ResponseWriter, _ *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	for _, tc := range []struct {
		name       string
		answer     func(int, http.ResponseWriter, *http.Request)
		status     int
		code       string
		attempts   int
		retryAfter string
	}{
		{"401 bad key", jsonError(401, `{"message": "Invalid API key upstream-detail-401"}`), 502, "upstream_auth_failed", 1, ""},
		{"403 no permission", jsonError(403, `{"error": "forbidden upstream-detail-403"}`), 502, "upstream_auth_failed", 1, ""},
		{"400 bad persona", jsonError(400, `{"message": "avatarId unknown upstream-detail-400"}`), 502, "upstream_rejected", 1, ""},
		{"404 unknown persona", jsonError(404, ``), 502, "upstream_rejected", 1, ""},
		{"429 with Retry-After", jsonError(429, `{"message": "slow down"}`, "Retry-After", "7"), 429, "upstream_rate_limited", 1, "7"},
		{"429 without Retry-After", jsonError(429, `not json`), 429, "upstream_rate_limited", 1, "1"},
		{"429 with a Retry-After over an hour", jsonError(429, `{}`, "Retry-After", "999999999999"), 429, "upstream_rate_limited", 1, "3600"},
		{"429 with a Retry-After date years ahead", jsonError(429, `{}`, "Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT"), 429, "upstream_rate_limited", 1, "3600"},
		{"500 every time", jsonError(500, `{"message": "boom upstream-detail-500"}`), 502, "upstream_unavailable", 3, ""},
		{"502 HTML from a gateway", jsonError(502, `<html><body>Bad Gateway upstream-detail-502</body></html>`), 502, "upstream_unavailable", 3, ""},
		{"connection dropped", hangUp, 502, "upstream_unavailable", 3, ""},
		{"2xx without a token", jsonError(200, `{"token": "x"}`), 502, "upstream_unavailable", 1, ""},
		{"2xx with a non-string token", jsonError(200, `{"sessionToken": 42}`), 502, "upstream_unavailable", 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := newUpstream(t, tc.answer)
			s := startWithUpstream(t, u, nil)
			a := s.post(t, "/api/session-token", []byte(`{"context": "sales"}`))
			if a.status != tc.status || a.body["code"] != tc.code {
				t.Errorf("answer %d %s, want %d %s", a.status, a.raw, tc.status, tc.code)
			}
			if strings.Contains(a.raw, "upstream-detail") || strings.Contains(a.raw, "Bad Gateway") {
				t.Errorf("Anam's words reached the caller: %s", a.raw)
			}
			if got := a.header.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tc.retryAfter)
			}
			if n := len(u.requests()); n != tc.attempts {
				t.Errorf("Anam received %d requests, want %d", n, tc.attempts)
			}
		})
	}
}

func TestTokenRetriesThenSucceeds(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n < 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"sessionToken": "a.b.c"}`)
	})
	s := startWithUpstream(t, u, nil)
	a := s.post(t, "/api/session-token", nil)
	if a.status != http.StatusOK || a.body["sessionToken"] != "a.b.c" || len(u.requests()) != 3 {
		t.Errorf("answer %d %s after %d attempts, want 200 after 3", a.status, a.raw, len(u.requests()))
	}
}

func TestTokenTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	t.Run("slow answer", func(t *testing.T) {
		u := newUpstream(t, func(_ int, w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		s := startWithUpstream(t, u, nil, "--anam-timeout", "300ms")
		a := s.post(t, "/api/session-token", nil)
		if a.status != http.StatusGatewayTimeout || a.body["code"] != "upstream_timeout" {
			t.Errorf("answer %d %s, want 504 upstream_timeout", a.status, a.raw)
		}
		if n := len(u.requests()); n != 1 {
			t.Errorf("Anam received %d requests, want 1 (a timed-out call is not retried)", n)
		}
	})
	t.Run("deadline passes while retrying", func(t *testing.T) {
		u := newUpstream(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			time.Sleep(100 * time.Millisecond)
			w.WriteHeader(http.StatusInternalServerError)
		})
		s := startWithUpstream(t, u, nil, "--anam-timeout", "250ms")
		a := s.post(t, "/api/session-token", nil)
		if a.status != http.StatusGatewayTimeout || a.body["code"] != "upstream_timeout" {
			t.Errorf("answer %d %s, want 504 upstream_timeout", a.status, a.raw)
		}
		if n := len(u.requests()); n < 1 || n > 2 {
			t.Errorf("Anam received %d requests, want 1 or 2 within 250ms", n)
		}
	})
}

func TestSandbox(t *testing.T) {
	t.Parallel()
	s := startService(t, map[string]string{}, "--sandbox", "--rules", "../../rules", "--personas", "../../personas")
	if !strings.Contains(s.logs.String(), "SANDBOX MODE") {
		t.Errorf("no sandbox warning at start:\n%s", s.logs.String())
	}
	a := s.post(t, "/api/session-token", []byte(`{"context": "sales"}`))
	if a.status != http.StatusOK || a.body["persona"] != "sales" {
		t.Fatalf("answer %d %s", a.status, a.raw)
	}
	token, _ := a.body["sessionToken"].(string)
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("sandbox token %q is not header.payload.signature", token)
	}
	for i, p := range parts {
		if p == "" || strings.ContainsAny(p, "+/=") {
			t.Errorf("part %d %q is not unpadded base64url", i, p)
		}
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var payload map[string]any
	if err := json.Unmarshal(raw, &payload); err != nil {
		t.Fatal(err)
	}
	exp, _ := payload["exp"].(float64)
	if payload["type"] != "ephemeral" || payload["accountId"] != "sandbox" || payload["sandbox"] != true ||
		time.Until(time.Unix(int64(exp), 0)) < 59*time.Minute || time.Until(time.Unix(int64(exp), 0)) > 61*time.Minute {
		t.Errorf("payload = %v", payload)
	}
}

func TestStartupRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no key", map[string]string{}, nil, "ANAM_API_KEY is not set"},
		{"key with a trailing newline", map[string]string{"ANAM_API_KEY": "SECRETKEY\n"}, nil, "ANAM_API_KEY has a space, control or non-ASCII character at byte 10 of 10"},
		{"key with a space", map[string]string{"ANAM_API_KEY": "SECRET KEY"}, nil, "at byte 7 of 10"},
		{"key with non-ASCII", map[string]string{"ANAM_API_KEY": "SECRETKEY\u00e9"}, nil, "at byte 10 of 11"},
		{"bad config", map[string]string{"ANAM_API_KEY": "k"}, []string{"--personas", "../../rules"}, "configuration rejected"},
		{"bad log format", map[string]string{"ANAM_API_KEY": "k", "LOG_FORMAT": "xml"}, nil, "--log-format must be json or text"},
		{"bad timeout env", map[string]string{"ANAM_API_KEY": "k", "ANAM_TIMEOUT": "soon"}, nil, `ANAM_TIMEOUT="soon"`},
		{"bad anam url", map[string]string{"ANAM_API_KEY": "k"}, []string{"--anam-url", "api.anam.ai"}, "--anam-url must be an http(s) URL"},
		{"bad origin", map[string]string{"ANAM_API_KEY": "k", "CORS_ORIGINS": "app.example.com"}, nil, "is not an origin"},
		{"negative shutdown grace", map[string]string{"ANAM_API_KEY": "k", "SHUTDOWN_GRACE": "-1s"}, nil, "--shutdown-grace must not be negative"},
		{"negative shutdown delay", map[string]string{"ANAM_API_KEY": "k", "SHUTDOWN_DELAY": "-1s"}, nil, "--shutdown-delay must not be negative"},
		{"zero redis timeout", map[string]string{"ANAM_API_KEY": "k", "REDIS_TIMEOUT": "0s"}, nil, "--redis-timeout must be positive"},
		{"address file in no directory", map[string]string{"ANAM_API_KEY": "k", "TOOL_SIGNING_SECRET": testSigningSecret, "ADDR_FILE": "/nonexistent-dir/addr"}, nil, "writing the address file"},
		{"bad rate limit", map[string]string{"ANAM_API_KEY": "k"}, []string{"--rate-limit", "10/day"}, "--rate-limit: rate limit"},
		{"bad trusted proxy", map[string]string{"ANAM_API_KEY": "k", "TRUSTED_PROXIES": "10.0.0.0/8, proxy.local"}, nil, `--trusted-proxies: "proxy.local" is not a CIDR or an IP address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			args := append([]string{"persona-router", "serve", "--addr", "127.0.0.1:0", "--rules", "../../rules", "--personas", "../../personas"}, tc.args...)
			err := run(context.Background(), args, func(k string) string { return tc.env[k] }, io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error()+stderr.String(), tc.want) {
				t.Errorf("run = %v\n%s\nwant an error containing %q", err, stderr.String(), tc.want)
			}
			if out := fmt.Sprint(err) + stderr.String(); strings.Contains(out, "SECRET") {
				t.Errorf("the refusal shows the key: %s", out)
			}
		})
	}
}

func TestFlagWinsOverEnvironment(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, nil)
	// ANAM_BASE_URL points nowhere; the flag must win. RULES_DIR applies as no flag sets it.
	env := map[string]string{"ANAM_API_KEY": testKey, "ANAM_BASE_URL": "http://127.0.0.1:1", "RULES_DIR": "../../rules", "PERSONAS_DIR": "../../personas", "LOG_FORMAT": "json"}
	s := startService(t, env, "--anam-url", u.URL)
	if a := s.post(t, "/api/session-token", nil); a.status != http.StatusOK {
		t.Errorf("answer %d %s: --anam-url did not win over ANAM_BASE_URL", a.status, a.raw)
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, nil)
	s := startWithUpstream(t, u, nil, "--cors-origins", "https://app.example.com, https://admin.example.com")
	preflight := func(origin string) answer {
		req, _ := http.NewRequest(http.MethodOptions, s.url+"/api/session-token", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		return do(t, req)
	}
	a := preflight("https://app.example.com")
	if a.status != http.StatusNoContent || a.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(a.header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("allowed preflight: %d %v", a.status, a.header)
	}
	a = preflight("https://evil.example.net")
	if a.status != http.StatusForbidden || a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("disallowed preflight: %d %v", a.status, a.header)
	}
	a = s.post(t, "/api/session-token", nil, "Origin", "https://admin.example.com")
	if a.status != http.StatusOK || a.header.Get("Access-Control-Allow-Origin") != "https://admin.example.com" {
		t.Errorf("allowed POST: %d %v", a.status, a.header)
	}
	a = s.post(t, "/api/session-token", nil, "Origin", "https://evil.example.net")
	if a.status != http.StatusForbidden || a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("disallowed POST: %d %v", a.status, a.header)
	}
	if n := len(u.requests()); n != 1 {
		t.Errorf("Anam received %d requests, want 1 (none for the disallowed origin)", n)
	}

	wild := startWithUpstream(t, u, nil, "--cors-origins", "https://*.example.org")
	a = wild.post(t, "/api/session-token", nil, "Origin", "https://shop.example.org")
	if a.status != http.StatusOK || a.header.Get("Access-Control-Allow-Origin") != "https://shop.example.org" {
		t.Errorf("wildcard origin: %d %v", a.status, a.header)
	}
	if a := wild.post(t, "/api/session-token", nil, "Origin", "https://example.org.evil.net"); a.status != http.StatusForbidden {
		t.Errorf("origin outside the wildcard: %d", a.status)
	}

	plain := startWithUpstream(t, u, nil)
	a = plain.post(t, "/api/session-token", nil, "Origin", "https://app.example.com")
	if a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS header without --cors-origins: %v", a.header)
	}
}

func TestAdminExplain(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, nil)
	explain := []byte(`{"context": "sales", "metadata": {"region": "US"}, "user": {"id": "u-1002"}}`)

	off := startWithUpstream(t, u, nil)
	if a := off.post(t, "/admin/explain", explain, "Authorization", "Bearer anything"); a.status != http.StatusNotFound {
		t.Errorf("admin API without ADMIN_TOKEN: %d %s, want 404", a.status, a.raw)
	}

	s := startWithUpstream(t, u, map[string]string{"ADMIN_TOKEN": "admin-secret-token"})
	for _, auth := range []string{"", "Bearer wrong", "admin-secret-token", "Bearer admin-secret-token-and-more"} {
		a := s.post(t, "/admin/explain", explain, "Authorization", auth)
		if a.status != http.StatusUnauthorized || a.body["code"] != "unauthorized" || a.header.Get("WWW-Authenticate") == "" {
			t.Errorf("Authorization %q: %d %s, want 401", auth, a.status, a.raw)
		}
	}
	a := s.post(t, "/admin/explain", explain, "Authorization", "Bearer admin-secret-token")
	if a.status != http.StatusOK || a.body["persona"] != "sales" || a.body["rule"] != "sales-v2-rollout" || a.body["reason"] != "rule" {
		t.Fatalf("explain: %d %s", a.status, a.raw)
	}
	trace, _ := a.body["trace"].([]any)
	// sales-eu, sales-v2-rollout (the winner), then the french overlay: overlays are tried
	// whatever rule wins.
	version, hasVersion := a.body["configVersion"].(string)
	pc, hasConfig := a.body["personaConfig"].(map[string]any)
	if len(trace) != 3 || !hasVersion || version == "" || !hasConfig || len(pc) == 0 {
		t.Errorf("explain: %s", a.raw)
	}
	// What the token endpoint would refuse, explain says so, with no decision.
	a = s.post(t, "/admin/explain", []byte(`{"context": "sales team"}`), "Authorization", "Bearer admin-secret-token")
	refused, ok := a.body["refused"].(map[string]any)
	if _, decided := a.body["persona"]; a.status != http.StatusOK || !ok || refused["status"] != 400.0 || refused["code"] != "invalid_request" || decided {
		t.Errorf("explain of a refused request: %d %s", a.status, a.raw)
	}
	// With all, the rules the context index skipped are listed.
	a = s.post(t, "/admin/explain", []byte(`{"context": "training", "all": true}`), "Authorization", "Bearer admin-secret-token")
	skipped := 0
	trace, _ = a.body["trace"].([]any)
	for _, st := range trace {
		if m, _ := st.(map[string]any); m["skipped"] == "context" {
			skipped++
		}
	}
	if a.status != http.StatusOK || skipped != 6 {
		t.Errorf("explain with all: %d skipped rules, want the 6 of other contexts: %s", skipped, a.raw)
	}
	if a := s.post(t, "/admin/explain", []byte(`{"user": "u1"}`), "Authorization", "Bearer admin-secret-token"); a.status != 400 || a.body["code"] != "invalid_request" {
		t.Errorf("bad explain body: %d %s", a.status, a.raw)
	}
	if n := len(u.requests()); n != 0 {
		t.Errorf("explain called Anam %d times", n)
	}
}

func TestOperationsEndpoints(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, nil)
	s := startWithUpstream(t, u, nil)
	s.post(t, "/api/session-token", []byte(`{"context": "training"}`))
	for path, want := range map[string]string{"/healthz": `"status":"ok"`, "/readyz": `"configVersion":"`} {
		resp, err := http.Get(s.url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`persona_router_http_requests_total{code="200",route="/api/session-token"} 1`,
		`persona_router_http_request_duration_seconds_count{route="/api/session-token"} 1`,
		`persona_router_decisions_total{persona="training",rule="training"} 1`,
		`persona_router_anam_requests_total{outcome="success"} 1`,
		`persona_router_anam_requests_total{outcome="unavailable"} 0`,
		`persona_router_anam_request_duration_seconds_count 1`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if a := s.post(t, "/nope", nil); a.status != 404 || a.body["code"] != "not_found" {
		t.Errorf("unknown path: %d %s", a.status, a.raw)
	}
	req, _ := http.NewRequest(http.MethodGet, s.url+"/api/session-token", nil)
	if a := do(t, req); a.status != 405 || a.body["code"] != "method_not_allowed" {
		t.Errorf("GET token endpoint: %d %s", a.status, a.raw)
	}
}

func TestRequestIDIsEchoed(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, nil)
	s := startWithUpstream(t, u, nil)
	if a := s.post(t, "/api/session-token", nil, "X-Request-Id", "req-123.abc"); a.header.Get("X-Request-Id") != "req-123.abc" {
		t.Errorf("X-Request-Id = %q", a.header.Get("X-Request-Id"))
	}
	if a := s.post(t, "/api/session-token", nil, "X-Request-Id", "bad id\" injected"); a.header.Get("X-Request-Id") == "bad id\" injected" {
		t.Error("an unsafe X-Request-Id was echoed")
	}
	if !strings.Contains(s.logs.String(), `"request_id":"req-123.abc"`) {
		t.Errorf("request log lacks the request id:\n%s", s.logs.String())
	}
}

func TestGracefulShutdownFinishesInFlightRequests(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}), make(chan struct{})
	u := newUpstream(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		close(arrived)
		<-release
		io.WriteString(w, `{"sessionToken": "late.but.fine"}`)
	})
	s := startWithUpstream(t, u, nil)
	result := make(chan answer, 1)
	go func() { result <- s.post(t, "/api/session-token", nil) }()
	<-arrived
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	// The service stops listening at once but keeps serving the request in flight.
	waitFor(t, func() bool {
		_, err := http.Get(s.url + "/healthz")
		return err != nil
	})
	close(release)
	if a := <-result; a.status != http.StatusOK || a.body["sessionToken"] != "late.but.fine" {
		t.Errorf("in-flight request: %d %s", a.status, a.raw)
	}
	if err := <-stopped; err != nil {
		t.Errorf("run returned %v, want nil (exit 0)", err)
	}
}

func TestRequestsPastTheShutdownGraceAnswer503(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{})
	// Anam never answers; the call ends only when the service gives up on it.
	u := newUpstream(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
	})
	s := startWithUpstream(t, u, nil, "--shutdown-grace", "100ms", "--anam-timeout", "5s")
	result := make(chan answer, 1)
	go func() { result <- s.post(t, "/api/session-token", nil) }()
	<-arrived
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	a := <-result
	code, ok := a.body["code"]
	if a.status != http.StatusServiceUnavailable || !ok || code != "shutting_down" {
		t.Errorf("request still running after the grace: %d %s, want 503 shutting_down", a.status, a.raw)
	}
	if err := <-stopped; err != nil {
		t.Errorf("run returned %v, want nil (exit 0)", err)
	}
	logs := s.logs.String()
	if !strings.Contains(logs, "shutdown grace is over") || !strings.Contains(logs, `"msg":"stopped"`) {
		t.Errorf("the log does not tell how the shutdown went:\n%s", logs)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition never became true")
}

func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	const token = "eyJsecret.eyJtoken-payload.signature-secret"
	u := newUpstream(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		switch n {
		case 0:
			fmt.Fprintf(w, `{"sessionToken": %q}`, token)
		case 1:
			w.WriteHeader(401)
			io.WriteString(w, `{"message": "bad key"}`)
		default:
			w.WriteHeader(400)
			io.WriteString(w, `{"message": "bad persona"}`)
		}
	})
	s := startWithUpstream(t, u, map[string]string{"ADMIN_TOKEN": "admin-token-secret"}, "--log-format", "text")
	if a := s.post(t, "/api/session-token", nil, "Authorization", "Bearer user-jwt-secret"); a.body["sessionToken"] != token {
		t.Fatalf("answer %s", a.raw)
	}
	s.post(t, "/api/session-token", nil)
	s.post(t, "/api/session-token", nil)
	s.post(t, "/admin/explain", nil, "Authorization", "Bearer admin-token-secret")
	s.post(t, "/admin/explain", nil, "Authorization", "Bearer wrong-admin-token-secret")
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	logs := s.logs.String()
	for _, secret := range []string{testKey, token, "eyJtoken-payload", "user-jwt-secret", "admin-token-secret", "Bearer", "You are Cara"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs)
		}
	}
	// The logs do say what happened, without the secrets.
	for _, want := range []string{"Anam refused the API key", "bad persona", "status=401"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q", want)
		}
	}
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "msg=request ") && !strings.Contains(sc.Text(), "route=/healthz") {
			lines++
		}
	}
	if lines != 5 {
		t.Errorf("%d request log lines, want one per request (5)", lines)
	}
}
