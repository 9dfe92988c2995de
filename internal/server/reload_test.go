package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/persona-router/persona-router/internal/reload"
)

// stuck is a reloader busy with another reload that outlasts every wait.
type stuck struct{}

func (stuck) Reload(ctx context.Context, _ string) (reload.Status, error) {
	<-ctx.Done()
	return reload.Status{}, ctx.Err()
}

func (stuck) LastReload() reload.Status { return reload.Status{} }

var _ Reloader = stuck{}

// POST /admin/reload waits for the reload loop at most the reload deadline and a second, and
// then answers with JSON rather than holding the connection until the write timeout.
func TestAdminReloadAnswersWithinTheDeadline(t *testing.T) {
	srv, err := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Configs: fixed{}, Anam: fakeMinter{},
		Metrics: NewMetrics(), Reloader: stuck{}, ReloadTimeout: 10 * time.Millisecond, AdminToken: "admin-token-for-tests"})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/admin/reload", nil)
	req.Header.Set("Authorization", "Bearer admin-token-for-tests")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", resp.StatusCode)
	}
	code, ok := body["code"]
	if !ok || code != "internal_error" {
		t.Errorf("code = %v (present %v), want internal_error", code, ok)
	}
	msg, ok := body["error"].(string)
	if !ok || !strings.Contains(msg, "reload did not finish within 1.01s") {
		t.Errorf("error = %v, want it to say the reload did not finish in time", body["error"])
	}
}
