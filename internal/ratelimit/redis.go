package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultPrefix namespaces the keys, as budget.DefaultPrefix does.
const DefaultPrefix = "persona-router:"

// DefaultTimeout bounds one call to Redis.
const DefaultTimeout = 50 * time.Millisecond

// Redis is a rate limit per key shared by every replica pointing at the same Redis, with the
// semantics of Limiter: spec.Count requests per spec.Per, in bursts of up to burst. It runs
// GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp) in a Lua
// script, so checking and taking are one atomic step and one round trip.
//
// Each key is PREFIX rate:KEY, holding the key's theoretical arrival time in Unix
// microseconds; it expires when the bucket would be full again, so idle keys cost nothing. The
// time comes from this process's clock, so replicas should run NTP: a replica whose clock is
// off by d lets a key's bucket refill d sooner or later.
type Redis struct {
	client   *redis.Client
	prefix   string
	interval time.Duration
	burst    int
	now      func() time.Time
	// Timeout bounds each call; past it Take fails with ErrStore. Set before first use.
	Timeout time.Duration
}

// NewRedis returns a limit on client allowing spec.Count requests per spec.Per per key, with
// bursts of up to burst requests (spec.Count when burst is 0), its keys starting with prefix
// (DefaultPrefix when "").
func NewRedis(client *redis.Client, prefix string, spec Spec, burst int) (*Redis, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if burst == 0 {
		burst = spec.Count
	}
	if burst < 0 {
		return nil, errors.New("rate burst must be positive")
	}
	if spec.Count <= 0 || spec.Per <= 0 {
		return nil, fmt.Errorf("rate limit %d per %s: expected a positive count and period", spec.Count, spec.Per)
	}
	return &Redis{
		client: client, prefix: prefix, interval: spec.Per / time.Duration(spec.Count), burst: burst,
		now: time.Now, Timeout: DefaultTimeout,
	}, nil
}

// gcraScript takes one request when the key's bucket allows it.
//
// KEYS[1] the key's theoretical arrival time (µs). ARGV: [1] now (µs), [2] the interval
// between requests at the sustained rate (µs), [3] the burst.
//
// Returns {1, 0} when allowed, or {0, µs until a request would be allowed}. A refused request
// changes nothing.
var gcraScript = redis.NewScript(`
local now, interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if tat < now then tat = now end
local next = tat + interval
local allowAt = next - burst * interval
if now < allowAt then
  return {0, math.ceil(allowAt - now)}
end
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', string.format('%.0f', math.ceil((next - now) / 1000)))
return {1, 0}
`)

// Rate is the limit as a budget store takes it in the same step as budgets: the interval
// between requests at the sustained rate, and the burst.
func (r *Redis) Rate() (interval time.Duration, burst int) { return r.interval, r.burst }

// Take implements Limit.
func (r *Redis) Take(ctx context.Context, key string) (bool, time.Duration, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := gcraScript.Run(ctx, r.client, []string{r.prefix + "rate:" + key},
		r.now().UnixMicro(), float64(r.interval)/float64(time.Microsecond), r.burst).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("%w: rate limit for %s: %w", ErrStore, key, err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("%w: rate limit for %s: unexpected reply %v", ErrStore, key, res)
	}
	return res[0] == 1, time.Duration(res[1]) * time.Microsecond, nil
}
