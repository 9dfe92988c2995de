package ratelimit

import (
	"context"
	"errors"
	"time"
)

// Limit takes one request for a key, in one process (Limiter) or shared by a fleet (Redis).
// ok is false when the key is over its limit, with wait until a request would be allowed; err
// (wrapping ErrStore) says the limit could not be checked, and the caller decides whether the
// request goes on.
type Limit interface {
	Take(ctx context.Context, key string) (ok bool, wait time.Duration, err error)
}

// ErrStore wraps a shared limit that could not answer (Redis unreachable or slow).
var ErrStore = errors.New("rate limit store unavailable")

var (
	_ Limit = (*Limiter)(nil)
	_ Limit = (*Redis)(nil)
)

// Take implements Limit; an in-process limit always answers.
func (l *Limiter) Take(_ context.Context, key string) (bool, time.Duration, error) {
	ok, wait := l.Allow(key)
	return ok, wait, nil
}
