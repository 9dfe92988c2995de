package server

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/persona-router/persona-router/internal/anam"
	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/config/configtest"
)

// Secrets that must never reach a span: Anam's API key and the session token it answers.
const (
	traceAPIKey = "anam-key-do-not-trace"
	traceToken  = "tok.en-do-not-trace.sig"
)

// tracedService is the token endpoint over real HTTP on a loopback port, with a real Anam
// client calling anamFake over real HTTP. tp nil is the service with tracing off.
type tracedService struct {
	srv    *Server
	url    string
	client *anam.Client
	// given is the HTTP client handed to anam.NewClient.
	given *http.Client
	logs  *syncBuffer
	close func()
}

func newTracedService(t *testing.T, tp trace.TracerProvider, anamFake http.Handler) *tracedService {
	t.Helper()
	snap := traceSnapshot(t)
	upstream := httptest.NewServer(anamFake)
	t.Cleanup(upstream.Close)
	given := &http.Client{}
	client := anam.NewClient(upstream.URL, traceAPIKey, given, 10*time.Second, anam.WithTracerProvider(tp))
	client.Backoff, client.MaxBackoff = time.Millisecond, 2*time.Millisecond

	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	srv, err := New(Options{Logger: log, Configs: fixed{snap}, Anam: client, Metrics: NewMetrics(), TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	ts := serveHTTP(t, srv, log, nil)
	return &tracedService{srv: srv, url: ts.URL, client: client, given: given, logs: logs, close: ts.Close}
}

// post sends a token request with the given traceparent ("" for none) and returns the status
// and the decoded answer.
func (ts *tracedService) post(t *testing.T, body, traceparent string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, ts.url+"/api/session-token", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var answer map[string]any
	if err := json.Unmarshal(raw, &answer); err != nil {
		t.Fatalf("answer %d %q is not JSON", resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, answer
}

// requestLine returns the service's one "request" log line; the server must be closed first,
// which waits for the line to be written.
func (ts *tracedService) requestLine(t *testing.T) map[string]any {
	t.Helper()
	var found map[string]any
	for l := range strings.Lines(ts.logs.String()) {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		if line["msg"] == "request" {
			if found != nil {
				t.Fatalf("two request lines:\n%s", ts.logs.String())
			}
			found = line
		}
	}
	if found == nil {
		t.Fatalf("no request line:\n%s", ts.logs.String())
	}
	return found
}

// traceSnapshot is a configuration with a default persona and a rule routing context
// "sales" to persona sales.
func traceSnapshot(tb testing.TB) *config.Snapshot {
	tb.Helper()
	persona := "avatarId: 30fa96d0-26c4-4e55-94a0-517025942e18\nvoiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b\n"
	files := map[string]string{
		"personas/default.yaml": "name: Cara\n" + persona,
		"personas/sales.yaml":   "name: Sam\n" + persona,
		"rules/a.yaml":          "rules:\n  - {name: to-sales, when: 'context == \"sales\"', persona: sales}\n",
	}
	snap := configtest.Load(tb, files)
	return snap
}

func recordingProvider() (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	exporter := tracetest.NewInMemoryExporter()
	return sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter)), exporter
}

// spansOfKind returns the ended spans of one kind.
func spansOfKind(spans tracetest.SpanStubs, kind trace.SpanKind) tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, s := range spans {
		if s.SpanKind == kind {
			out = append(out, s)
		}
	}
	return out
}

func attrOf(attrs []attribute.KeyValue, key string) (attribute.Value, bool) {
	for _, a := range attrs {
		if string(a.Key) == key {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

func wantAttr(t *testing.T, what string, attrs []attribute.KeyValue, key string, want any) {
	t.Helper()
	v, ok := attrOf(attrs, key)
	if !ok {
		t.Errorf("%s has no %s attribute: %v", what, key, attrs)
		return
	}
	if got := v.AsInterface(); got != want {
		t.Errorf("%s: %s = %v (%T), want %v (%T)", what, key, got, got, want, want)
	}
}

// parseTraceparent splits a W3C traceparent into its trace and parent span ids.
func parseTraceparent(t *testing.T, h string) (trace.TraceID, trace.SpanID) {
	t.Helper()
	ctx := propagation.TraceContext{}.Extract(t.Context(), propagation.MapCarrier{"traceparent": h})
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		t.Fatalf("traceparent %q is not valid W3C Trace Context", h)
	}
	return sc.TraceID(), sc.SpanID()
}

// noSecrets fails when a span's name, attributes or events hold the API key or the token.
func noSecrets(t *testing.T, spans tracetest.SpanStubs) {
	t.Helper()
	for _, s := range spans {
		texts := []string{s.Name, s.Status.Description}
		for _, a := range s.Attributes {
			texts = append(texts, a.Value.Emit())
		}
		for _, e := range s.Events {
			texts = append(texts, e.Name)
			for _, a := range e.Attributes {
				texts = append(texts, a.Value.Emit())
			}
		}
		for _, text := range texts {
			if strings.Contains(text, traceAPIKey) || strings.Contains(text, traceToken) {
				t.Errorf("span %q holds a secret: %q", s.Name, text)
			}
		}
	}
}

// otelHandlers names the engine's middleware that comes from OpenTelemetry packages.
func otelHandlers(s *Server) []string {
	var names []string
	for _, h := range s.engine.Handlers {
		name := runtime.FuncForPC(reflect.ValueOf(h).Pointer()).Name()
		if strings.Contains(name, "opentelemetry") || strings.Contains(name, "/telemetry.") {
			names = append(names, name)
		}
	}
	return names
}

const frontendTrace = "0af7651916cd43dd8448eb211c80319c"

func TestTokenRequestIsTracedFromServerToAnam(t *testing.T) {
	tp, exporter := recordingProvider()
	fake := &fakeAnam{token: traceToken}
	ts := newTracedService(t, tp, fake)
	if len(otelHandlers(ts.srv)) == 0 {
		t.Errorf("tracing on, yet no OpenTelemetry middleware is installed: %v", ts.srv.engine.Handlers)
	}
	status, header, answer := ts.post(t, `{"context": "sales"}`, "00-"+frontendTrace+"-b7ad6b7169203331-01")
	ts.close()
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, answer)
	}

	spans := exporter.GetSpans()
	noSecrets(t, spans)
	servers, clients := spansOfKind(spans, trace.SpanKindServer), spansOfKind(spans, trace.SpanKindClient)
	if len(servers) != 1 || len(clients) != 1 {
		t.Fatalf("%d server and %d client spans, want one of each: %v", len(servers), len(clients), spans)
	}
	server, client := servers[0], clients[0]
	if server.Name != "POST /api/session-token" {
		t.Errorf("server span named %q", server.Name)
	}
	wantAttr(t, "server span", server.Attributes, "http.route", "/api/session-token")
	wantAttr(t, "server span", server.Attributes, "http.response.status_code", int64(200))
	wantAttr(t, "server span", server.Attributes, "persona_router.persona", "sales")
	wantAttr(t, "server span", server.Attributes, "persona_router.rule", "to-sales")
	wantAttr(t, "server span", server.Attributes, "persona_router.context", "sales")
	wantAttr(t, "server span", server.Attributes, "persona_router.request_id", header.Get("X-Request-Id"))
	if version, ok := answer["configVersion"].(string); !ok || version == "" {
		t.Errorf("answer has no configVersion: %v", answer)
	} else {
		wantAttr(t, "server span", server.Attributes, "persona_router.config_version", version)
	}
	if _, ok := attrOf(server.Attributes, "persona_router.error_code"); ok {
		t.Errorf("a success has an error code: %v", server.Attributes)
	}

	// The frontend's trace is linked, not continued: the service starts its own trace.
	if server.Parent.IsValid() || server.SpanContext.TraceID().String() == frontendTrace {
		t.Errorf("server span continues the caller's trace (parent %v, trace %s)", server.Parent, server.SpanContext.TraceID())
	}
	if len(server.Links) != 1 || server.Links[0].SpanContext.TraceID().String() != frontendTrace ||
		server.Links[0].SpanContext.SpanID().String() != "b7ad6b7169203331" {
		t.Errorf("server span links %v, want the frontend's span", server.Links)
	}

	if client.Name != "POST /v1/auth/session-token" {
		t.Errorf("client span named %q", client.Name)
	}
	if client.Parent.SpanID() != server.SpanContext.SpanID() || client.SpanContext.TraceID() != server.SpanContext.TraceID() {
		t.Errorf("client span's parent %v, want the server span %v", client.Parent, server.SpanContext)
	}
	wantAttr(t, "client span", client.Attributes, "http.response.status_code", int64(200))

	got := fake.received()
	if len(got) != 1 {
		t.Fatalf("Anam received %d requests, want 1", len(got))
	}
	traceID, parent := parseTraceparent(t, got[0])
	if traceID != server.SpanContext.TraceID() || parent != client.SpanContext.SpanID() {
		t.Errorf("Anam's traceparent %q, want trace %s and parent %s (the client span)", got[0], server.SpanContext.TraceID(), client.SpanContext.SpanID())
	}

	line := ts.requestLine(t)
	if id, ok := line["trace_id"]; !ok || id != server.SpanContext.TraceID().String() {
		t.Errorf("log line's trace_id %v (present: %v), want %s: %v", id, ok, server.SpanContext.TraceID(), line)
	}
}

func TestAnamRetriesAreSpansAndEvents(t *testing.T) {
	tp, exporter := recordingProvider()
	fake := &fakeAnam{token: traceToken, script: []int{http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusOK}}
	ts := newTracedService(t, tp, fake)
	status, _, answer := ts.post(t, `{"context": "sales"}`, "")
	ts.close()
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, answer)
	}
	spans := exporter.GetSpans()
	servers, clients := spansOfKind(spans, trace.SpanKindServer), spansOfKind(spans, trace.SpanKindClient)
	if len(servers) != 1 || len(clients) != 3 {
		t.Fatalf("%d server and %d client spans, want 1 and 3 (one per attempt)", len(servers), len(clients))
	}
	server := servers[0]
	clientIDs := map[trace.SpanID]bool{}
	for _, c := range clients {
		if c.Parent.SpanID() != server.SpanContext.SpanID() {
			t.Errorf("attempt span %v is not a child of the server span", c.SpanContext.SpanID())
		}
		clientIDs[c.SpanContext.SpanID()] = true
	}
	// One event per retry, for the attempt that failed: 503 then 502.
	wantStatus := []int64{503, 502}
	retries := 0
	for _, e := range server.Events {
		if e.Name != "anam.retry" {
			continue
		}
		retries++
		if retries > len(wantStatus) {
			continue
		}
		what := fmt.Sprintf("retry event %d", retries)
		wantAttr(t, what, e.Attributes, "anam.attempt", int64(retries))
		wantAttr(t, what, e.Attributes, "http.response.status_code", wantStatus[retries-1])
		wantAttr(t, what, e.Attributes, "error.type", "unavailable")
		if _, ok := attrOf(e.Attributes, "anam.backoff_ms"); !ok {
			t.Errorf("%s has no backoff: %v", what, e.Attributes)
		}
	}
	if retries != len(wantStatus) {
		t.Errorf("%d retry events on the server span, want %d: %v", retries, len(wantStatus), server.Events)
	}
	// Each attempt carried its own span as traceparent's parent.
	got := fake.received()
	if len(got) != 3 {
		t.Fatalf("Anam received %d requests, want 3", len(got))
	}
	seen := map[trace.SpanID]bool{}
	for _, h := range got {
		traceID, parent := parseTraceparent(t, h)
		if traceID != server.SpanContext.TraceID() || !clientIDs[parent] || seen[parent] {
			t.Errorf("attempt's traceparent %q: want the request's trace and a distinct attempt span", h)
		}
		seen[parent] = true
	}
}

func TestFailedTokenRequestSpanHasTheErrorCode(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		anam       []int
		status     int
		code       string
		spanStatus otelcodes.Code
		decided    bool
	}{
		{name: "anam refuses the key", body: `{"context": "sales"}`, anam: []int{http.StatusUnauthorized},
			status: http.StatusBadGateway, code: "upstream_auth_failed", spanStatus: otelcodes.Error, decided: true},
		{name: "bad request", body: `{"context": 5}`,
			status: http.StatusBadRequest, code: "invalid_request", spanStatus: otelcodes.Unset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp, exporter := recordingProvider()
			ts := newTracedService(t, tp, &fakeAnam{token: traceToken, script: tc.anam})
			status, _, answer := ts.post(t, tc.body, "")
			ts.close()
			if code, ok := answer["code"]; status != tc.status || !ok || code != tc.code {
				t.Fatalf("answer %d %v, want %d %s", status, answer, tc.status, tc.code)
			}
			servers := spansOfKind(exporter.GetSpans(), trace.SpanKindServer)
			if len(servers) != 1 {
				t.Fatalf("%d server spans, want 1", len(servers))
			}
			server := servers[0]
			wantAttr(t, "server span", server.Attributes, "persona_router.error_code", tc.code)
			wantAttr(t, "server span", server.Attributes, "http.response.status_code", int64(tc.status))
			if server.Status.Code != tc.spanStatus {
				t.Errorf("span status %v, want %v", server.Status.Code, tc.spanStatus)
			}
			if _, ok := attrOf(server.Attributes, "persona_router.persona"); ok != tc.decided {
				t.Errorf("persona attribute present: %v, want %v: %v", ok, tc.decided, server.Attributes)
			}
			noSecrets(t, exporter.GetSpans())
		})
	}
}

func TestProbesAreNotTraced(t *testing.T) {
	tp, exporter := recordingProvider()
	ts := newTracedService(t, tp, &fakeAnam{token: traceToken})
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/nowhere"} {
		resp, err := http.Get(ts.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	ts.close()
	var names []string
	for _, s := range exporter.GetSpans() {
		names = append(names, s.Name)
	}
	// An unknown path is still traced (someone is probing the API); the probes are not.
	if len(names) != 1 || names[0] != "GET" {
		t.Errorf("spans %q, want only the unmatched request's", names)
	}
}

// TestTracingOffInstallsNothing: with no TracerProvider, nothing of OpenTelemetry runs. The
// global provider and propagator are set to recording ones meanwhile, so that middleware or a
// transport falling back to the globals would be caught.
func TestTracingOffInstallsNothing(t *testing.T) {
	global, exporter := recordingProvider()
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(global)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })

	fake := &fakeAnam{token: traceToken}
	ts := newTracedService(t, nil, fake)
	if names := otelHandlers(ts.srv); len(names) != 0 {
		t.Errorf("tracing off, yet middleware %v is installed", names)
	}
	if ts.client.HTTP != ts.given {
		t.Errorf("tracing off, yet the Anam client's HTTP client was replaced")
	}
	status, _, answer := ts.post(t, `{"context": "sales"}`, "00-"+frontendTrace+"-b7ad6b7169203331-01")
	ts.close()
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, answer)
	}
	if got := fake.received(); len(got) != 1 || got[0] != "" {
		t.Errorf("Anam received traceparents %q, want one request without", got)
	}
	if spans := exporter.GetSpans(); len(spans) != 0 {
		t.Errorf("tracing off, yet %d spans were recorded", len(spans))
	}
	line := ts.requestLine(t)
	if id, ok := line["trace_id"]; ok {
		t.Errorf("tracing off, yet the log line has trace_id %v", id)
	}
	if _, ok := line["persona"]; !ok {
		t.Errorf("the log line lacks the request's persona (is this the request line?): %v", line)
	}
}

// TestBrowsersMaySendTraceContext: a traced frontend adds traceparent and tracestate to its
// calls; a preflight that did not allow them would make the browser drop the request.
func TestBrowsersMaySendTraceContext(t *testing.T) {
	srv, err := New(Options{Logger: slog.New(slog.DiscardHandler), Configs: fixed{}, Anam: fakeMinter{}, Metrics: NewMetrics(),
		CORSOrigins: []string{"https://app.example"}})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodOptions, "/api/session-token", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", http.MethodPost)
	req.Header.Set("Access-Control-Request-Headers", "content-type,traceparent,tracestate")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	allowed := map[string]bool{}
	for _, h := range strings.Split(rec.Header().Get("Access-Control-Allow-Headers"), ",") {
		allowed[strings.ToLower(strings.TrimSpace(h))] = true
	}
	if rec.Code >= 300 || !allowed["traceparent"] || !allowed["tracestate"] {
		t.Errorf("preflight answered %d allowing %q, want traceparent and tracestate allowed", rec.Code, rec.Header().Get("Access-Control-Allow-Headers"))
	}
}
