package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

// The request's log record and Keys map are reused from request to request: each line reports
// its own request only, and the handlers' fields reach it.
func TestRequestLinesReportTheirOwnRequest(t *testing.T) {
	var logs syncBuffer
	m := &scriptedMinter{answers: []minted{{token: "h.p.s"}}}
	srv := newTestServer(t, m, func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	if a := post(t, srv, context.Background(), `{"context": "sales", "metadata": {"tier": "pro"}}`); a.status != http.StatusOK {
		t.Fatalf("status %d: %s", a.status, a.raw)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/nowhere", nil))
	post(t, srv, context.Background(), `{"context": 5}`)

	var lines []map[string]any
	for line := range strings.Lines(logs.String()) {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatal(err)
		}
		if l["msg"] == "request" {
			lines = append(lines, l)
		}
	}
	if len(lines) != 3 {
		t.Fatalf("%d request lines, want 3:\n%s", len(lines), logs.String())
	}
	want := []map[string]any{
		{"route": "/api/session-token", "context": "sales", "persona": "default", "rule": "pro", "anam_status": 200.0},
		{"route": "unmatched", "code": "not_found"},
		{"route": "/api/session-token", "code": "invalid_request"},
	}
	ids := map[any]bool{}
	for i, l := range lines {
		for k, v := range want[i] {
			if l[k] != v {
				t.Errorf("line %d: %s = %v, want %v: %v", i, k, l[k], v, l)
			}
		}
		for _, k := range []string{"context", "persona", "rule", "config_version", "anam_status", "code", "overlays"} {
			if _, ok := want[i][k]; !ok && l[k] != nil && !(k == "config_version" && i == 0) {
				t.Errorf("line %d carries %s = %v from another request: %v", i, k, l[k], l)
			}
		}
		ids[l["request_id"]] = true
	}
	if len(ids) != 3 {
		t.Errorf("request ids %v, want three different", ids)
	}
}

// What one request leaves in the context's Keys (the user identify found) is gone for the
// next: a rate limit must never count a request against another's user.
func TestKeysDoNotOutliveTheirRequest(t *testing.T) {
	srv := newTestServer(t, &scriptedMinter{}, nil)
	r := gin.New()
	r.Use(srv.observe())
	r.GET("/set", func(c *gin.Context) { c.Set(userKey, map[string]any{"id": "u1"}) })
	leaked := 0
	r.GET("/check", func(c *gin.Context) {
		if _, ok := c.Get(userKey); ok {
			leaked++
		}
	})
	for range 20 {
		for _, path := range []string{"/set", "/check"} {
			r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
		}
	}
	if leaked > 0 {
		t.Errorf("%d of 20 requests saw the previous request's user", leaked)
	}
}

// passThrough hides the handler's type from the server, which then adds the line's attributes
// to the record one by one.
type passThrough struct{ slog.Handler }

// The request line is the same, byte for byte, whether its attributes reach log/slog's
// handlers as one group without a key or one by one.
func TestRequestLineIsTheSameInlined(t *testing.T) {
	for name, newHandler := range map[string]func(w io.Writer) slog.Handler{
		"json": func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) },
		"text": func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) },
	} {
		lines := map[bool]string{}
		for _, inlined := range []bool{true, false} {
			var logs syncBuffer
			h := newHandler(&logs)
			if !inlined {
				h = passThrough{h}
			}
			srv := newTestServer(t, &scriptedMinter{answers: []minted{{token: "h.p.s"}}}, func(o *Options) { o.Logger = slog.New(h) })
			if srv.inlineGroups != inlined {
				t.Fatalf("%s: inlineGroups %v, want %v", name, srv.inlineGroups, inlined)
			}
			for _, body := range []string{`{"context": "sales", "metadata": {"tier": "pro"}}`, `{"context": 5}`} {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(http.MethodPost, "/api/session-token", strings.NewReader(body))
				req.Header.Set(requestIDHeader, "req-1")
				srv.ServeHTTP(rec, req)
			}
			lines[inlined] = timesAndLatencies.ReplaceAllString(logs.String(), "")
		}
		if lines[true] != lines[false] {
			t.Errorf("%s: inlined\n%s\none by one\n%s", name, lines[true], lines[false])
		}
		if !strings.Contains(lines[true], "request_id") || strings.Count(lines[true], "\n") < 2 {
			t.Errorf("%s: no request lines:\n%s", name, lines[true])
		}
	}
}

var timesAndLatencies = regexp.MustCompile(`"?time"?[=:]"?[^ ,"]+"?|"?latency_ms"?[=:][0-9.e-]+`)
