// Package ratelimit limits how often each caller may ask for a session token: a token bucket
// per key (the user, or the client's address), with a bounded number of keys in memory.
package ratelimit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// Spec is a parsed --rate-limit: Count requests per Per.
type Spec struct {
	Count int
	Per   time.Duration
}

// ParseSpec parses "10/min" (also /s, /sec, /m, /h, /hour).
func ParseSpec(s string) (Spec, error) {
	count, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	n, err := strconv.Atoi(strings.TrimSpace(count))
	if !ok || err != nil || n <= 0 {
		return Spec{}, fmt.Errorf("rate limit %q: expected COUNT/UNIT like 10/min, with a positive count", s)
	}
	per, ok := map[string]time.Duration{
		"s": time.Second, "sec": time.Second, "second": time.Second,
		"m": time.Minute, "min": time.Minute, "minute": time.Minute,
		"h": time.Hour, "hour": time.Hour,
	}[strings.TrimSpace(unit)]
	if !ok {
		return Spec{}, fmt.Errorf("rate limit %q: unit must be s, min or h", s)
	}
	return Spec{Count: n, Per: per}, nil
}

// String writes the spec as ParseSpec reads it: 10/min, 5/s, 100/h.
func (s Spec) String() string {
	unit := map[time.Duration]string{time.Second: "s", time.Minute: "min", time.Hour: "h"}[s.Per]
	if unit == "" {
		unit = s.Per.String()
	}
	return strconv.Itoa(s.Count) + "/" + unit
}

// DefaultMaxKeys bounds the keys held at once (about 10 MB); past it the least recently seen
// are dropped.
const DefaultMaxKeys = 50_000

// Limiter holds one token bucket per key.
type Limiter struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	keys  *simplelru.LRU[string, *rate.Limiter]
}

// New returns a limiter allowing spec.Count requests per spec.Per per key, with bursts of up to
// burst requests (spec.Count when burst is 0), holding at most maxKeys keys.
//
// Past maxKeys the least recently seen key is dropped, so memory stays flat however many
// distinct callers there are; a dropped key starts again with a full bucket, which matters
// only when more than maxKeys callers are active at once.
func New(spec Spec, burst, maxKeys int) (*Limiter, error) {
	if burst == 0 {
		burst = spec.Count
	}
	if burst < 0 {
		return nil, errors.New("rate burst must be positive")
	}
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	keys, err := simplelru.NewLRU[string, *rate.Limiter](maxKeys, nil)
	if err != nil {
		return nil, err
	}
	return &Limiter{limit: rate.Limit(float64(spec.Count) / spec.Per.Seconds()), burst: burst, keys: keys}, nil
}

// Allow takes one request for key; when the key is over its limit it returns false and how
// long until a request would be allowed.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	now := time.Now()
	l.mu.Lock()
	b, ok := l.keys.Get(key)
	if !ok {
		b = rate.NewLimiter(l.limit, l.burst)
		l.keys.Add(key, b)
	}
	l.mu.Unlock()
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Len is the number of keys held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.keys.Len()
}
