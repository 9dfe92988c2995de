package anam

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestErrorMessageParsesBodiesDefensively(t *testing.T) {
	for body, want := range map[string]string{
		`{"message": "Invalid persona"}`:           "Invalid persona",
		`{"error": "forbidden"}`:                   "forbidden",
		`{"error": {"message": "nested"}}`:         "nested",
		`{"statusCode": 500}`:                      `{"statusCode": 500}`,
		``:                                         "(empty body)",
		`<html>Bad Gateway</html>`:                 "<html>Bad Gateway</html>",
		strings.Repeat("é", 400):                   strings.Repeat("é", 150) + "…",
		`{"message": 42, "error": "second field"}`: "second field",
	} {
		if got := errorMessage([]byte(body)); got != want {
			t.Errorf("errorMessage(%.40q) = %.60q, want %.60q", body, got, want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	for h, want := range map[string]time.Duration{
		"7":    7 * time.Second,
		" 3 ":  3 * time.Second,
		"":     time.Second,
		"0":    time.Second,
		"-5":   time.Second,
		"soon": time.Second,
		time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat): 90 * time.Second,
		time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat):       time.Second,
		// Anything longer is clamped to an hour, without overflowing on the way.
		"3600":                    time.Hour,
		"3601":                    time.Hour,
		"999999999999":            time.Hour,
		"9223372036854775807":     time.Hour,
		"99999999999999999999999": time.Hour,
		time.Now().Add(50 * time.Hour).UTC().Format(http.TimeFormat): time.Hour,
		"Fri, 31 Dec 9999 23:59:59 GMT":                              time.Hour,
	} {
		got := retryAfter(h)
		if got < want-2*time.Second || got > want {
			t.Errorf("retryAfter(%q) = %s, want about %s", h, got, want)
		}
	}
}

func TestBackoffIsJitteredAndCapped(t *testing.T) {
	c := NewClient("http://x", "k", nil, time.Second)
	for n, max := range map[int]time.Duration{1: 250 * time.Millisecond, 2: 500 * time.Millisecond, 4: 2 * time.Second, 40: 2 * time.Second} {
		seen := map[time.Duration]bool{}
		for range 50 {
			d := c.backoff(n)
			if d < max/2 || d > max {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", n, d, max/2, max)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("backoff(%d) took only %d values in 50 draws: no jitter", n, len(seen))
		}
	}
}

func TestAnswerWithoutATokenString(t *testing.T) {
	for name, answer := range map[string]string{
		"number":       `{"sessionToken": 42}`,
		"empty string": `{"sessionToken": ""}`,
		"object":       `{"sessionToken": {"value": "t"}}`,
		"absent":       `{"token": "t"}`,
		"not JSON":     `<html>ok</html>`,
		"too large":    `{"pad": "` + strings.Repeat("x", maxBody) + `", "sessionToken": "t"}`,
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(answer))
		}))
		c := NewClient(srv.URL, "k", srv.Client(), time.Second)
		token, err := c.CreateSessionToken(context.Background(), Bytes(`{}`))
		ae, ok := err.(*Error)
		if token != "" || !ok || ae.Kind != Unavailable || ae.Status != 200 || !strings.Contains(ae.Detail, "no sessionToken") {
			t.Errorf("%s: token %q, error %v; want no token, unavailable (HTTP 200)", name, token, err)
		}
		srv.Close()
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"sessionToken": "tok.en.x", "expiresIn": 3600}`))
	}))
	defer srv.Close()
	if token, err := NewClient(srv.URL, "k", srv.Client(), time.Second).CreateSessionToken(context.Background(), Bytes(`{}`)); token != "tok.en.x" || err != nil {
		t.Errorf("token %q, %v; want tok.en.x", token, err)
	}
}

// recordingTransport keeps the requests it is given and answers with a token.
type recordingTransport struct{ requests []*http.Request }

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.requests = append(rt.requests, r)
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{"sessionToken":"a.b.c"}`)), Request: r}, nil
}

// The transport may read the request body after the call has returned, when the caller has
// already reused its buffer: what it reads is still the request. And the body is one the
// transport knows to be in memory (it sends headers and body in one write only for those),
// with its length and a way to send it again.
func TestRequestIsSentFromACopy(t *testing.T) {
	rt := &recordingTransport{}
	c := NewClient("http://anam.test", "k", &http.Client{Transport: rt}, time.Second)
	buf := []byte(`{"personaConfig":{"name":"first"}}`)
	want := string(buf)
	if _, err := c.CreateSessionToken(context.Background(), Bytes(buf)); err != nil {
		t.Fatal(err)
	}
	copy(buf, `{"personaConfig":{"name":"XXXXX"}}`)
	if len(rt.requests) != 1 {
		t.Fatalf("%d requests, want 1", len(rt.requests))
	}
	r := rt.requests[0]
	if data, _ := io.ReadAll(r.Body); string(data) != want {
		t.Errorf("the transport read %q after the call, want %q", data, want)
	}
	if r.ContentLength != int64(len(want)) || r.GetBody == nil {
		t.Errorf("ContentLength %d, GetBody set %v; want %d and a GetBody", r.ContentLength, r.GetBody != nil, len(want))
	}
	if body, _ := r.GetBody(); body != nil {
		if data, _ := io.ReadAll(body); string(data) != want {
			t.Errorf("GetBody read %q, want %q", data, want)
		}
	}
	if got := r.Header.Get("Authorization"); got != "Bearer k" {
		t.Errorf("Authorization %q", got)
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q", got)
	}
}

// FuzzQuickToken holds the fast reading of Anam's answer to encoding/json's: whenever
// quickToken takes an answer, encoding/json reads the same token from it.
func FuzzQuickToken(f *testing.F) {
	for _, seed := range []string{
		`{"sessionToken":"eyJhbGciOiJIUzI1NiJ9.eyJ0eXBlIjoiZXBoZW1lcmFsIn0.c2ln"}`,
		" {\n\t\"sessionToken\" : \"a.b.c\" }\r\n",
		`{"sessionToken":""}`,
		`{"sessionToken":"a\"b"}`,
		`{"sessionToken":"a\u0041"}`,
		`{"sessionToken":"a","sessionToken":"b"}`,
		`{"SessionToken":"a"}`,
		`{"sessionToken":"é"}`,
		"\u00a0{\"sessionToken\":\"a\"}",
		`{"sessionToken":"a"`,
		`{"sessionToken":5}`,
		`{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		token, ok := quickToken(data)
		if !ok {
			return
		}
		var answer tokenAnswer
		if err := json.Unmarshal(data, &answer); err != nil {
			t.Fatalf("quickToken took %q (token %q), which encoding/json refuses: %v", data, token, err)
		}
		if answer.SessionToken != token {
			t.Fatalf("quickToken read %q from %q, encoding/json %q", token, data, answer.SessionToken)
		}
	})
}

func TestQuickTokenTakesAnamsAnswer(t *testing.T) {
	for _, tc := range []struct {
		answer string
		token  string
		ok     bool
	}{
		{`{"sessionToken":"h.p.s"}`, "h.p.s", true},
		{" {\n  \"sessionToken\": \"h.p.s\"\n}\n", "h.p.s", true},
		{`{"sessionToken":"h.p.s","expiresIn":3600}`, "", false},
		{`{"sessionToken":"h\/p"}`, "", false},
		{`{"token":"h.p.s"}`, "", false},
	} {
		token, ok := quickToken([]byte(tc.answer))
		if token != tc.token || ok != tc.ok {
			t.Errorf("quickToken(%q) = %q, %v; want %q, %v", tc.answer, token, ok, tc.token, tc.ok)
		}
	}
}

// The Authorization header is built once per key, and follows the key when it changes.
func TestAuthorizationFollowsTheKey(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
		_, _ = io.WriteString(w, `{"sessionToken":"h.p.s"}`)
	}))
	defer srv.Close()
	c := NewClient(srv.URL, "first", srv.Client(), time.Second)
	for _, key := range []string{"first", "first", "second"} {
		c.APIKey = key
		if _, err := c.CreateSessionToken(context.Background(), Bytes(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"Bearer first", "Bearer first", "Bearer second"}
	if !slices.Equal(got, want) {
		t.Fatalf("Authorization headers %q, want %q", got, want)
	}
}

// The request is the one http.NewRequest makes for the endpoint, with a URL of its own, and
// follows BaseURL when it changes; a BaseURL that does not parse is refused as before.
func TestRequestIsTheOneNewRequestMakes(t *testing.T) {
	rt := &recordingTransport{}
	c := NewClient("http://anam.test:/api", "k", &http.Client{Transport: rt}, time.Second)
	for _, base := range []string{"http://anam.test:/api", "http://anam.test:/api", "https://other.test:8443"} {
		c.BaseURL = base
		if _, err := c.CreateSessionToken(context.Background(), Bytes(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range rt.requests {
		want, err := http.NewRequest(http.MethodPost, []string{"http://anam.test:/api", "http://anam.test:/api", "https://other.test:8443"}[i]+SessionPath, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.URL.String() != want.URL.String() || *r.URL != *want.URL || r.Host != want.Host || r.Method != want.Method ||
			r.Proto != want.Proto || r.ProtoMajor != want.ProtoMajor || r.ProtoMinor != want.ProtoMinor {
			t.Errorf("request %d: %s %s host %q %s, want %s %s host %q %s", i, r.Method, r.URL, r.Host, r.Proto, want.Method, want.URL, want.Host, want.Proto)
		}
	}
	if rt.requests[0].URL == rt.requests[1].URL {
		t.Error("two requests share one URL")
	}
	c.BaseURL = "http://bad host"
	_, err := c.CreateSessionToken(context.Background(), Bytes(`{}`))
	var ae *Error
	if !errors.As(err, &ae) || ae.Kind != Rejected || !strings.HasPrefix(ae.Detail, "building request: ") {
		t.Errorf("bad base URL: %v, want a Rejected error building the request", err)
	}
}
