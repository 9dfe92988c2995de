package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
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

// serveHTTP serves h through HTTPServer, as the service does, on a loopback port; adjust may
// change the http.Server before it starts.
func serveHTTP(t *testing.T, h http.Handler, log *slog.Logger, adjust func(*http.Server)) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = HTTPServer("", h, time.Second, log)
	if adjust != nil {
		adjust(ts.Config)
	}
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

func TestSlowBodyTimesOutWithoutSocketAddresses(t *testing.T) {
	srv, err := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Configs: fixed{}, Anam: fakeMinter{}, Metrics: NewMetrics()})
	if err != nil {
		t.Fatal(err)
	}
	// The read timeout is what cuts a slow client off; 100 ms stands in for production's 30 s.
	ts := serveHTTP(t, srv, slog.New(slog.NewTextHandler(io.Discard, nil)), func(s *http.Server) { s.ReadTimeout = 100 * time.Millisecond })

	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Half a body, then nothing: the client is stalled until the server answers.
	if _, err := io.WriteString(conn, "POST /api/session-token HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"context\": "); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("answer %d %q is not JSON", resp.StatusCode, raw)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("status %d, want 408", resp.StatusCode)
	}
	if code, ok := body["code"]; !ok || code != "request_timeout" {
		t.Errorf("code %v (present: %v), want request_timeout: %s", code, ok, raw)
	}
	if msg, ok := body["error"]; !ok || msg != "reading the request body timed out" {
		t.Errorf("error %v (present: %v), want a fixed message: %s", msg, ok, raw)
	}
	for _, leak := range []string{"127.0.0.1", "tcp", "i/o timeout"} {
		if strings.Contains(string(raw), leak) {
			t.Errorf("answer contains %q: %s", leak, raw)
		}
	}
}

func TestHTTPServerLogsThroughTheServiceLogger(t *testing.T) {
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	// A handler that answers twice makes net/http report the mistake on the server's ErrorLog.
	twice := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.WriteHeader(http.StatusTeapot)
	})
	ts := serveHTTP(t, twice, log, nil)
	resp, err := http.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ts.Close() // waits for the handler, and so for its log line

	var line map[string]any
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, "superfluous response.WriteHeader") {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatalf("net/http's line is not the service's JSON: %q", l)
			}
		}
	}
	if line == nil {
		t.Fatalf("net/http's report did not reach the service's logger; its logs:\n%s", logs.String())
	}
	if level, ok := line["level"]; !ok || level != "WARN" {
		t.Errorf("level %v (present: %v), want WARN: %v", level, ok, line)
	}
	if msg, ok := line["msg"].(string); !ok || !strings.HasPrefix(msg, "http: superfluous response.WriteHeader call") {
		t.Errorf("msg %q, want net/http's message as it is", msg)
	}
}
