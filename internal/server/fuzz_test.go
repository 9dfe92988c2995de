package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/persona-router/persona-router/internal/anam"
	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/config/configtest"
	"github.com/persona-router/persona-router/internal/schema"
)

// fakeMinter answers every session request with the same token.
type fakeMinter struct{}

var _ Minter = fakeMinter{}

func (fakeMinter) CreateSessionToken(context.Context, anam.Body) (string, error) {
	return "h.p.s", nil
}

type fixed struct{ snap *config.Snapshot }

func (f fixed) Current() *config.Snapshot { return f.snap }

// FuzzTokenRequest sends arbitrary bodies to the token endpoint of a server with a metadata
// schema: every answer is a success or a client error (400, 413, 422) in the documented JSON
// shape, never a 500, and whatever is accepted obeyed the context rule.
func FuzzTokenRequest(f *testing.F) {
	files := map[string]string{
		"personas/default.yaml": "name: \"Cara {{ metadata.tier ?? '' }} {{ context }}\"\navatarId: 30fa96d0-26c4-4e55-94a0-517025942e18\nvoiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b\n",
		"rules/a.yaml": "metadata:\n  tier: {type: string, enum: [free, pro]}\n  seats: {type: integer, min: 1}\n  note: {type: string, maxLength: 20}\n" +
			"rules:\n  - {name: pro, when: 'metadata.tier == \"pro\" && metadata.seats > 3', persona: default}\n",
	}
	snap := configtest.Load(f, files)
	srv, err := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Configs: fixed{snap}, Anam: fakeMinter{}, Metrics: NewMetrics()})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		``, `{}`, `null`, `{"context": "sales"}`, `{"context": null, "metadata": null}`,
		`{"metadata": {"tier": "pro", "seats": 4}}`, `{"metadata": {"tier": "gold"}}`, `{"metadata": {"seats": 1.5}}`,
		`{"metadata": {"note": "xxxxxxxxxxxxxxxxxxxxxxxxx"}}`, `{"contxt": 1}`, `{"context": "a b"}`, `[1]`, `{} x`, `"s"`,
		`{"metadata": {"tier": "pro", "seats": 1e400}}`, `{"context": "\u00e9"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/session-token", bytes.NewReader(body)))
		var answer map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
			t.Fatalf("status %d, body %q is not JSON", rec.Code, rec.Body.String())
		}
		switch rec.Code {
		case http.StatusOK:
			if answer["sessionToken"] != "h.p.s" {
				t.Fatalf("200 without the token: %s", rec.Body.String())
			}
			var req struct{ Context string }
			_ = json.Unmarshal(body, &req)
			if !schema.ValidContext(req.Context) {
				t.Fatalf("accepted context %q", req.Context)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
			code, hasCode := answer["code"].(string)
			msg, hasMsg := answer["error"].(string)
			if !hasCode || code == "" || !hasMsg || msg == "" {
				t.Fatalf("error without code and message: %s", rec.Body.String())
			}
		default:
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body.String())
		}
	})
}
