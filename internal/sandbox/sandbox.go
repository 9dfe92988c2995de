// Package sandbox is the fake Anam that --sandbox serves tokens from, and that tests and
// benchmarks serve over real HTTP. It stays out of the production packages: only the service's
// --sandbox wiring imports it.
package sandbox

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/persona-router/persona-router/internal/anam"
	"github.com/persona-router/persona-router/internal/catalogue"
)

// APIKey is the key the sandbox's client sends and its fake accepts.
const APIKey = "sandbox"

// baseURL is where the sandbox's client believes Anam is; no request leaves the process.
const baseURL = "http://anam.sandbox"

// NewClient returns an Anam client whose calls are answered by a Fake in this process, with no
// socket: the sandbox reaches its fake Anam through the same client code as the real one
// (with the same options, tracing included).
func NewClient(timeout time.Duration, opts ...anam.Option) *anam.Client {
	return anam.NewClient(baseURL, APIKey, InProcess(&Fake{APIKey: APIKey}), timeout, opts...)
}

// Fake is a stand-in for Anam's session-token endpoint, following the contract this service
// relies on: it checks the bearer key and the persona config as Anam does, and answers with a
// sandbox token. The sandbox serves it in-process; tests and benchmarks serve it over HTTP.
type Fake struct {
	// APIKey is the only key accepted.
	APIKey string
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
}

var _ http.Handler = (*Fake)(nil)

func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != anam.SessionPath {
		fakeError(w, http.StatusNotFound, "not found")
		return
	}
	if r.Method != http.MethodPost {
		fakeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+f.APIKey {
		fakeError(w, http.StatusUnauthorized, "Invalid API key")
		return
	}
	var req map[string]any
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		fakeError(w, http.StatusBadRequest, "invalid JSON body")
		return
	}
	if msg := validateRequest(req); msg != "" {
		fakeError(w, http.StatusBadRequest, msg)
		return
	}
	now := time.Now()
	if f.Now != nil {
		now = f.Now()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"sessionToken": SandboxToken(now)})
}

// validateRequest checks a session-token request as Anam does: a personaConfig in one of its
// two modes, and the documented top-level fields. Fields it does not know are let through, as
// Anam's schema keeps growing.
func validateRequest(req map[string]any) string {
	pc, ok := req["personaConfig"].(map[string]any)
	if !ok {
		return "personaConfig is required"
	}
	if id, ok := pc["personaId"]; ok {
		if s, _ := id.(string); !catalogue.IsUUID(s) {
			return "personaConfig.personaId must be a UUID"
		}
		return ""
	}
	if problems := catalogue.ValidateRequest(req, nil); len(problems) > 0 {
		return problems[0].Error()
	}
	return ""
}

func fakeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"message": msg, "statusCode": status})
}

type sandboxClaims struct {
	Type      string `json:"type"`
	AccountID string `json:"accountId"`
	Sandbox   bool   `json:"sandbox"`
	ID        string `json:"jti"`
	IssuedAt  int64  `json:"iat"`
	Expires   int64  `json:"exp"`
}

var (
	sandboxHeader    = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	sandboxSignature = base64.RawURLEncoding.EncodeToString([]byte("sandbox-unsigned"))
)

// SandboxToken returns an unsigned, JWT-shaped sandbox token (header.payload.signature, each
// base64url) valid for one hour from now. Anam's browser SDK decodes a token's payload, without
// verifying it, in createClient(), so a frontend can be wired against the sandbox with the real
// SDK. Its payload says "sandbox": true; Anam would reject it.
func SandboxToken(now time.Time) string {
	enc := base64.RawURLEncoding
	payload, _ := json.Marshal(sandboxClaims{
		Type: "ephemeral", AccountID: "sandbox", Sandbox: true,
		ID: rand.Text(), IssuedAt: now.Unix(), Expires: now.Add(time.Hour).Unix(),
	})
	return sandboxHeader + "." + enc.EncodeToString(payload) + "." + sandboxSignature
}

// InProcess returns an http.Client whose requests are served by h directly, without a socket.
func InProcess(h http.Handler) *http.Client {
	return &http.Client{Transport: inProcess{h}}
}

type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		defer r.Body.Close() // as a RoundTripper must, even on errors
	}
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	w := &recorder{header: http.Header{}}
	t.h.ServeHTTP(w, r)
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return &http.Response{
		Status:        strconv.Itoa(w.status) + " " + http.StatusText(w.status),
		StatusCode:    w.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.header,
		Body:          io.NopCloser(&w.body),
		ContentLength: int64(w.body.Len()),
		Request:       r,
	}, nil
}

// recorder is the http.ResponseWriter of an in-process request: it keeps the answer whole, as
// the fake's answers are small.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *recorder) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}
