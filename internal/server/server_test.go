package server

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// serveHTTP serves h through HTTPServer, as the service does, on a loopback port; adjust may
// change the http.Server before it starts.
func serveHTTP(t *testing.T, h http.Handler, adjust func(*http.Server)) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = HTTPServer("", h, time.Second)
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
	ts := serveHTTP(t, srv, func(s *http.Server) { s.ReadTimeout = 100 * time.Millisecond })

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
