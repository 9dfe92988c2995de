package anam

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultBaseURL is Anam's production API.
const DefaultBaseURL = "https://api.anam.ai"

// SessionPath is the session-token endpoint, relative to the base URL.
const SessionPath = "/v1/auth/session-token"

// Kind classifies a failed call, which decides what the caller is told.
type Kind int

const (
	// Unavailable: 5xx, a network error, or a 2xx without a token, after retries.
	Unavailable Kind = iota
	// AuthFailed: 401 or 403, the API key is missing, wrong or lacks permission.
	AuthFailed
	// Rejected: any other 4xx, our request was refused (a bad persona config, an unknown
	// personaId).
	Rejected
	// RateLimited: 429.
	RateLimited
	// Timeout: no answer within the call's deadline.
	Timeout
)

var kindNames = [...]string{Unavailable: "unavailable", AuthFailed: "auth_failed", Rejected: "rejected", RateLimited: "rate_limited", Timeout: "timeout"}

func (k Kind) String() string { return kindNames[k] }

// Kinds lists every Kind, for pre-creating metric series.
var Kinds = []Kind{Unavailable, AuthFailed, Rejected, RateLimited, Timeout}

// Error is a failed session-token call. Its text never holds the API key or a token; Detail is
// what Anam said, for logs only — it is never shown to a caller.
type Error struct {
	Kind Kind
	// Status is Anam's last HTTP status, 0 when there was no answer.
	Status int
	// RetryAfter is Anam's Retry-After for RateLimited, between one second and MaxRetryAfter.
	RetryAfter time.Duration
	// Attempts is how many requests were made.
	Attempts int
	// Detail is Anam's error message or a transport error, truncated.
	Detail string
}

// retryable tells whether another attempt may succeed: after a network error or a 5xx, not
// after any answer Anam meant (a 4xx, or a 2xx without a token).
func (e *Error) retryable() bool {
	return e.Kind == Unavailable && (e.Status == 0 || e.Status >= 500)
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("anam session-token call %s after %d attempt(s)", e.Kind, e.Attempts)
	if e.Status != 0 {
		msg += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Client calls Anam's session-token API.
type Client struct {
	// BaseURL is Anam's API root, DefaultBaseURL in production.
	BaseURL string
	// APIKey is sent as a bearer token and nowhere else.
	APIKey string
	// HTTP sends the requests.
	HTTP *http.Client
	// Timeout bounds a whole call, retries included.
	Timeout time.Duration
	// Attempts is the most requests one call makes: the first and the retries.
	Attempts int
	// Backoff is the wait before the first retry; it doubles up to MaxBackoff, with jitter.
	Backoff, MaxBackoff time.Duration

	// auth caches the Authorization header's value for APIKey (net/http only reads header
	// values), so that a call does not build it again.
	auth atomic.Pointer[authHeader]
	// target caches the endpoint's parsed URL for BaseURL.
	target atomic.Pointer[target]
}

type authHeader struct {
	key   string
	value []string
}

// authorization is the Authorization header for APIKey, built once per key.
func (c *Client) authorization() []string {
	if a := c.auth.Load(); a != nil && a.key == c.APIKey {
		return a.value
	}
	a := &authHeader{key: c.APIKey, value: []string{"Bearer " + c.APIKey}}
	c.auth.Store(a)
	return a.value
}

// endpoint is the session-token request for BaseURL, without body or context: its URL and
// Host, as http.NewRequest makes them, built once per base URL. Nothing changes it.
func (c *Client) endpoint() (*http.Request, error) {
	if e := c.target.Load(); e != nil && e.base == c.BaseURL {
		return e.req, nil
	}
	req, err := http.NewRequest(http.MethodPost, c.BaseURL+SessionPath, nil)
	if err != nil {
		return nil, err
	}
	c.target.Store(&target{base: c.BaseURL, req: req})
	return req, nil
}

type target struct {
	base string
	req  *http.Request
}

// NewClient returns a client with Anam's SDK retry policy: 3 attempts, 250 ms first backoff,
// 2 s cap.
func NewClient(baseURL, apiKey string, httpClient *http.Client, timeout time.Duration, opts ...Option) *Client {
	c := &Client{
		BaseURL: strings.TrimRight(baseURL, "/"), APIKey: apiKey, HTTP: httpClient, Timeout: timeout,
		Attempts: 3, Backoff: 250 * time.Millisecond, MaxBackoff: 2 * time.Second,
	}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// maxBody bounds what is read of an answer: a token is about a kilobyte.
const maxBody = 64 << 10

// Body is a JSON session-token request. The client copies it before sending, so its buffer may
// be reused as soon as CreateSessionToken returns.
type Body interface {
	Bytes() []byte
}

// Bytes is a Body held in a plain byte slice.
type Bytes []byte

// Bytes returns b.
func (b Bytes) Bytes() []byte { return b }

// CreateSessionToken asks Anam for a session token with body, the JSON session-token request
// (personaConfig and the request's other fields, as rendered by the persona package). Only
// network errors and 5xx answers are retried, with jittered exponential backoff, and only while
// the deadline allows; a 4xx or a 2xx is never retried. Failures are *Error.
func (c *Client) CreateSessionToken(ctx context.Context, body Body) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	// The transport may still read the request after the call has returned, and it writes the
	// headers and the body in one write(2) only for a body it knows to be in memory (a
	// *bytes.Reader): the request is sent from a copy of its own, not from the caller's buffer.
	data := bytes.Clone(body.Bytes())
	var last *Error
	for attempt := 1; ; attempt++ {
		token, err := c.attempt(ctx, data)
		if err == nil {
			return token, nil
		}
		err.Attempts = attempt
		if !err.retryable() || attempt >= c.Attempts {
			return "", err
		}
		last = err
		wait := c.backoff(attempt)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return "", &Error{Kind: Timeout, Status: last.Status, Attempts: attempt, Detail: "deadline reached while retrying: " + last.Detail}
		}
		traceRetry(ctx, err, attempt, wait)
		select {
		case <-ctx.Done():
			return "", &Error{Kind: Timeout, Status: last.Status, Attempts: attempt, Detail: ctx.Err().Error()}
		case <-time.After(wait):
		}
	}
}

// backoff is the wait before retry n (from 1): half to all of min(MaxBackoff, Backoff·2ⁿ⁻¹).
func (c *Client) backoff(n int) time.Duration {
	d := c.Backoff << (n - 1)
	if d > c.MaxBackoff || d <= 0 {
		d = c.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// answers holds the buffers answers are read into: a token is about a kilobyte.
var answers = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, 4096)) }}

var jsonValue = []string{"application/json"}

// tokenAnswer is the part of Anam's answer the service uses. A sessionToken that is not a
// string fails to decode and leaves SessionToken empty.
type tokenAnswer struct {
	SessionToken string `json:"sessionToken"`
}

func (c *Client) attempt(ctx context.Context, body []byte) (string, *Error) {
	target, err := c.endpoint()
	if err != nil {
		return "", &Error{Kind: Rejected, Detail: "building request: " + err.Error()}
	}
	// The request is made as for any URL (its body, length and GetBody as net/http sets them
	// for a *bytes.Reader), then pointed at the endpoint parsed once: parsing the URL again is
	// most of what building a request costs.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "", bytes.NewReader(body))
	if err != nil {
		return "", &Error{Kind: Rejected, Detail: "building request: " + err.Error()}
	}
	*req.URL = *target.URL
	req.Host = target.Host
	req.Header["Authorization"] = c.authorization()
	// Shared, never modified: net/http only reads header values, and replaces a slice to
	// change one.
	req.Header["Content-Type"] = jsonValue
	req.Header["Accept"] = jsonValue
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", &Error{Kind: Timeout, Detail: ctx.Err().Error()}
		}
		return "", &Error{Kind: Unavailable, Detail: transportDetail(err)}
	}
	defer resp.Body.Close()
	buf := answers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxBody {
			buf.Reset()
			answers.Put(buf)
		}
	}()
	answer := io.LimitedReader{R: resp.Body, N: maxBody}
	if _, err := buf.ReadFrom(&answer); err != nil {
		if ctx.Err() != nil {
			return "", &Error{Kind: Timeout, Status: resp.StatusCode, Detail: ctx.Err().Error()}
		}
		return "", &Error{Kind: Unavailable, Status: resp.StatusCode, Detail: "reading answer: " + transportDetail(err)}
	}
	data := buf.Bytes()
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		token, ok := quickToken(data)
		if !ok {
			var answer tokenAnswer
			_ = json.Unmarshal(data, &answer)
			token = answer.SessionToken
		}
		if token != "" {
			return token, nil
		}
		return "", &Error{Kind: Unavailable, Status: s, Detail: "answer has no sessionToken string"}
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		return "", &Error{Kind: AuthFailed, Status: s, Detail: errorMessage(data)}
	case s == http.StatusTooManyRequests:
		return "", &Error{Kind: RateLimited, Status: s, RetryAfter: retryAfter(resp.Header.Get("Retry-After")), Detail: errorMessage(data)}
	case s >= 400 && s < 500:
		return "", &Error{Kind: Rejected, Status: s, Detail: errorMessage(data)}
	default:
		return "", &Error{Kind: Unavailable, Status: s, Detail: errorMessage(data)}
	}
}

// quickToken reads the answer Anam gives, {"sessionToken":"…"} with optional white space and a
// token of printable ASCII without escapes, in one pass: the general decoder validates and then
// decodes the kilobyte token byte by byte, a few microseconds per request. Any other answer
// (more fields, escapes, other bytes) returns false, and the caller decodes it with
// encoding/json; FuzzQuickToken holds the two to the same result.
func quickToken(b []byte) (string, bool) {
	const key = `"sessionToken"`
	b = trimJSONSpace(b)
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return "", false
	}
	b = trimJSONSpace(b[1 : len(b)-1])
	if !bytes.HasPrefix(b, []byte(key)) {
		return "", false
	}
	b = trimJSONSpace(b[len(key):])
	if len(b) == 0 || b[0] != ':' {
		return "", false
	}
	b = trimJSONSpace(b[1:])
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return "", false
	}
	v := b[1 : len(b)-1]
	for _, ch := range v {
		if ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\' {
			return "", false
		}
	}
	return string(v), true
}

// trimJSONSpace drops JSON's white space (space, tab, CR, LF) from both ends of b.
func trimJSONSpace(b []byte) []byte { return bytes.Trim(b, " \t\r\n") }

// transportDetail describes a transport error without the URL, which http.Client adds.
func transportDetail(err error) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		return ue.Unwrap().Error()
	}
	return err.Error()
}

// errorMessage extracts Anam's message from an error body: JSON with "message" or "error",
// or the text itself (gateways answer HTML or plain text), truncated.
func errorMessage(body []byte) string {
	var parsed map[string]any
	if json.Unmarshal(body, &parsed) == nil {
		for _, key := range []string{"message", "error"} {
			switch v := parsed[key].(type) {
			case string:
				return truncate(v)
			case map[string]any:
				if m, ok := v["message"].(string); ok {
					return truncate(m)
				}
			}
		}
	}
	text := strings.TrimSpace(string(body))
	if text == "" {
		return "(empty body)"
	}
	return truncate(text)
}

func truncate(s string) string {
	const max = 300
	if len(s) > max {
		return strings.ToValidUTF8(s[:max], "") + "…"
	}
	return s
}

// MaxRetryAfter bounds the Retry-After passed on from Anam. A larger value is more likely a
// mistake than a plan, and clients would give up on the service for that long.
const MaxRetryAfter = time.Hour

// retryAfter reads a Retry-After header, in seconds or as an HTTP date, and keeps it between
// one second and MaxRetryAfter. Seconds are compared before they become a Duration, which
// overflows beyond about 292 years.
func retryAfter(h string) time.Duration {
	h = strings.TrimSpace(h)
	if secs, err := strconv.ParseUint(h, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		// ErrRange: more digits than a uint64 holds, which is more than MaxRetryAfter.
		return time.Duration(min(max(secs, 1), uint64(MaxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(time.Until(t).Round(time.Second), time.Second), MaxRetryAfter)
	}
	return time.Second
}
