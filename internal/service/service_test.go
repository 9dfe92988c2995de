package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/reload"
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

// sandboxOptions runs the shipped configuration against the in-process fake Anam, on a loopback
// port, with every goroutine the service can start: watcher, poller and SIGHUP.
func sandboxOptions(t *testing.T, logs io.Writer) Options {
	return Options{
		Logger:        slog.New(slog.NewJSONHandler(logs, nil)),
		Addr:          "127.0.0.1:0",
		AddrFile:      filepath.Join(t.TempDir(), "addr"),
		Dirs:          config.Dirs{Rules: "../../rules", Personas: "../../personas", SigningSecret: []byte("service-test-secret-of-32-bytes!")},
		Sandbox:       true,
		AnamTimeout:   10 * time.Second,
		Watch:         true,
		PollInterval:  time.Hour,
		ReloadTimeout: reload.DefaultTimeout,
		Auth:          AuthNone,
		ShutdownGrace: 5 * time.Second,
	}
}

// call sends method path to the service and returns the status and the JSON body.
func call(t *testing.T, s *Service, method, path string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.Addr().String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("%s %s: %d %q is not JSON", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, body
}

// leftovers lists the goroutines still running in the service's or the reload package's code.
func leftovers() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var found []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "persona-router/internal/service.") && !strings.Contains(g, "service.leftovers") ||
			strings.Contains(g, "persona-router/internal/reload.") {
			found = append(found, g)
		}
	}
	return found
}

func TestStartServesAndStopJoinsEverything(t *testing.T) {
	logs := &syncBuffer{}
	opts := sandboxOptions(t, logs)
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if tcp, ok := addr.(*net.TCPAddr); !ok || tcp.Port == 0 || !tcp.IP.IsLoopback() {
		t.Fatalf("Addr() = %v, want the loopback port listened on", addr)
	}
	written, err := os.ReadFile(opts.AddrFile)
	if err != nil || string(written) != addr.String()+"\n" {
		t.Errorf("address file holds %q (%v), want %q", written, err, addr.String()+"\n")
	}
	if entries, _ := os.ReadDir(filepath.Dir(opts.AddrFile)); len(entries) != 1 {
		t.Errorf("the address file's directory holds %d entries, want the file alone (no temporary left)", len(entries))
	}
	if status, body := call(t, s, http.MethodPost, "/api/session-token"); status != http.StatusOK {
		t.Fatalf("token request: %d %v", status, body)
	}
	if status, body := call(t, s, http.MethodGet, "/readyz"); status != http.StatusOK {
		t.Fatalf("/readyz: %d %v", status, body)
	}
	if len(leftovers()) == 0 {
		t.Fatal("no goroutine of the service found while it runs: the leftover check below could not fail")
	}

	cancel()
	if err := s.Wait(); err != nil {
		t.Errorf("Wait after the context ended = %v, want nil", err)
	}
	http.DefaultClient.CloseIdleConnections()
	if g := leftovers(); len(g) > 0 {
		t.Errorf("%d goroutines of the service still run after Wait:\n%s", len(g), strings.Join(g, "\n\n"))
	}
	if _, err := s.configs.Reload(context.Background(), reload.TriggerAdmin); !errors.Is(err, reload.ErrStopped) {
		t.Errorf("the reload loop still runs after Wait: Reload = %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		t.Error("the service still accepts connections after Wait")
	}
	if _, err := os.Stat(opts.AddrFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the address file is still there after Wait: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after Wait = %v", err)
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Errorf("no stopped line in the log:\n%s", logs.String())
	}
}

// TestShutdownDelayDrains stops a service with a long shutdown delay: during it the service is
// unready but serves tokens as before; Close ends the delay.
func TestShutdownDelayDrains(t *testing.T) {
	opts := sandboxOptions(t, io.Discard)
	opts.ShutdownDelay = time.Hour
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, body := call(t, s, http.MethodGet, "/readyz")
		if status == http.StatusServiceUnavailable {
			if code, ok := body["code"]; !ok || code != "not_ready" {
				t.Errorf("/readyz while draining: %d %v, want code not_ready", status, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never became unready after the context ended: %d %v", status, body)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if status, body := call(t, s, http.MethodPost, "/api/session-token"); status != http.StatusOK {
		t.Errorf("token request while draining: %d %v, want 200", status, body)
	}
	if status, body := call(t, s, http.MethodGet, "/healthz"); status != http.StatusOK {
		t.Errorf("/healthz while draining: %d %v, want 200", status, body)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close during the delay = %v", err)
	}
	if _, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
		t.Error("the service still accepts connections after Close")
	}
}

func TestCloseWithoutContextEnding(t *testing.T) {
	s, err := New(sandboxOptions(t, io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if _, err := s.configs.Reload(context.Background(), reload.TriggerAdmin); !errors.Is(err, reload.ErrStopped) {
		t.Errorf("the reload loop still runs after Close: Reload = %v", err)
	}
}

func TestNewRejectsAnInvalidConfiguration(t *testing.T) {
	logs := &syncBuffer{}
	opts := sandboxOptions(t, logs)
	opts.Dirs.Personas = "../../rules"
	_, err := New(opts)
	if !errors.Is(err, ErrConfigRejected) {
		t.Fatalf("New = %v, want ErrConfigRejected", err)
	}
	if !strings.Contains(logs.String(), "configuration rejected: not starting") || !strings.Contains(logs.String(), `"msg":"configuration error"`) {
		t.Errorf("the log does not list the errors:\n%s", logs.String())
	}
}

func TestStartFailsOnABusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	opts := sandboxOptions(t, io.Discard)
	opts.Addr = ln.Addr().String()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "listening on") {
		t.Errorf("Start on a busy address = %v, want a listening error", err)
	}
	if _, err := os.Stat(opts.AddrFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an address file was written for a service that never listened: %v", err)
	}
}
