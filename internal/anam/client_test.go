package anam

import (
	"net/http"
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
