package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/config/configtest"
)

// probe answers method path from h: the status and the JSON body.
func probe(t *testing.T, h http.Handler, method, path string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("%s %s: %d %q is not JSON: %v", method, path, rec.Code, rec.Body.String(), err)
	}
	return rec.Code, body
}

// wantNotReady checks a 503 not_ready answer that says why.
func wantNotReady(t *testing.T, status int, body map[string]any, why string) {
	t.Helper()
	code, hasCode := body["code"]
	msg, hasMsg := body["error"]
	if status != http.StatusServiceUnavailable || !hasCode || code != "not_ready" || !hasMsg || msg == "" {
		t.Errorf("/readyz %s: %d %v, want 503 not_ready with a message", why, status, body)
	}
}

func TestReadyzMeansWantsRequests(t *testing.T) {
	snap, err := config.Load(configtest.Large{Rules: 2, Contexts: 1, Personas: 2}.Write(t))
	if err != nil {
		t.Fatal(err)
	}
	newServer := func(deny bool, check func(context.Context) error) *Server {
		srv, err := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Configs: fixed{snap}, Anam: fakeMinter{},
			Metrics: NewMetrics(), DenyOnStoreError: deny, StoreCheck: check})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}

	t.Run("shutting down", func(t *testing.T) {
		srv := newServer(false, nil)
		status, body := probe(t, srv, http.MethodGet, "/readyz")
		if v, ok := body["configVersion"]; status != http.StatusOK || !ok || v != snap.Version {
			t.Fatalf("/readyz before shutdown: %d %v", status, body)
		}
		srv.Drain()
		status, body = probe(t, srv, http.MethodGet, "/readyz")
		wantNotReady(t, status, body, "while draining")
		// Draining changes readiness only: the process is alive and still mints tokens.
		if status, body := probe(t, srv, http.MethodGet, "/healthz"); status != http.StatusOK {
			t.Errorf("/healthz while draining: %d %v", status, body)
		}
		if status, body := probe(t, srv, http.MethodPost, "/api/session-token"); status != http.StatusOK {
			t.Errorf("token request while draining: %d %v", status, body)
		}
	})

	t.Run("store failing with deny", func(t *testing.T) {
		var failing atomic.Bool
		var calls atomic.Int32
		check := func(context.Context) error {
			calls.Add(1)
			if failing.Load() {
				return errors.New("dial tcp: connection refused")
			}
			return nil
		}
		srv := newServer(true, check)
		if status, body := probe(t, srv, http.MethodGet, "/readyz"); status != http.StatusOK {
			t.Errorf("/readyz with the store answering: %d %v", status, body)
		}
		failing.Store(true)
		status, body := probe(t, srv, http.MethodGet, "/readyz")
		wantNotReady(t, status, body, "with the store failing")
		if !srv.storeFailing.Load() {
			t.Error("a failed readiness check of the store did not mark it failing for /admin/config")
		}
		// Readiness itself finds out when the store is back: a replica the load balancer no
		// longer sends requests to must not stay unready.
		failing.Store(false)
		if status, body := probe(t, srv, http.MethodGet, "/readyz"); status != http.StatusOK || srv.storeFailing.Load() {
			t.Errorf("/readyz with the store back: %d %v (failing %v)", status, body, srv.storeFailing.Load())
		}
		if n := calls.Load(); n != 3 {
			t.Errorf("the store was checked %d times, want once per /readyz (3)", n)
		}
	})

	t.Run("store failing with allow", func(t *testing.T) {
		var calls atomic.Int32
		srv := newServer(false, func(context.Context) error { calls.Add(1); return errors.New("down") })
		if status, body := probe(t, srv, http.MethodGet, "/readyz"); status != http.StatusOK {
			t.Errorf("/readyz with allow and the store down: %d %v, want 200 (requests go ahead)", status, body)
		}
		if n := calls.Load(); n != 0 {
			t.Errorf("with allow, /readyz checked the store %d times", n)
		}
	})
}
