package budget

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// DefaultPrefix namespaces every key the stores write, so one Redis can serve other uses.
const DefaultPrefix = "persona-router:"

// DefaultTimeout is how long one call to Redis may take before the request goes on without it
// (or is refused, as --on-store-error says).
const DefaultTimeout = 50 * time.Millisecond

// keySlack keeps a counter a little past its window's reset (and an open session set past its
// latest reserved time), so a reservation made just before the reset, on a replica whose clock
// is slightly behind Redis's, still finds its counter.
const keySlack = time.Minute

// DialRedis builds a client for a redis:// or rediss:// (TLS) URL. The password is the URL's
// when it has one, else password (REDIS_PASSWORD). Timeouts are short because every call is
// on a request's path; options given in the URL's query (dial_timeout=…, pool_size=…) win.
// It does not connect: the client dials when first used and redials by itself after Redis
// has been away.
func DialRedis(rawURL, password string) (*redis.Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		return nil, fmt.Errorf("redis URL %q: expected redis://[:password@]host:port[/db] or rediss://…", redact(rawURL))
	}
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis URL %q: %w", redact(rawURL), err)
	}
	if opt.Password == "" {
		opt.Password = password
	}
	if opt.TLSConfig != nil && opt.TLSConfig.MinVersion < tls.VersionTLS12 {
		opt.TLSConfig.MinVersion = tls.VersionTLS12
	}
	setDefault(&opt.DialTimeout, 500*time.Millisecond)
	setDefault(&opt.ReadTimeout, 250*time.Millisecond)
	setDefault(&opt.WriteTimeout, 250*time.Millisecond)
	setDefault(&opt.PoolTimeout, 100*time.Millisecond)
	// Connections kept open so that a burst does not dial inside a call's 50 ms deadline:
	// dialling (and TLS) under load is what turns a busy moment into store errors.
	if opt.MinIdleConns == 0 {
		opt.MinIdleConns = 10
	}
	// Each call's context carries the store's deadline (50 ms), which must bound the call
	// rather than the socket timeouts above.
	opt.ContextTimeoutEnabled = true
	// A reservation must not run twice: a retry after a lost reply would spend twice. A failed
	// call is the caller's to handle (--on-store-error).
	opt.MaxRetries = -1
	opt.DialerRetries = 1
	// Redis Enterprise's maintenance notices and CLIENT SETINFO are extra commands on every new
	// connection that a plain Redis does not need.
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	opt.DisableIdentity = true
	return redis.NewClient(opt), nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d == 0 {
		*d = v
	}
}

// redact hides a URL's password for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Redis is a Store shared by every replica pointing at the same Redis. Each operation is one
// round trip: a Lua script for Reserve and Release, so checking and spending are one atomic
// step in Redis, and a pipeline of reads for Remaining.
//
// Per claim it keeps two keys. PREFIX budget:used:BUDGET:KEY:WINDOW-START is a hash of the
// sessions (s) and seconds (t) spent in the window; it expires a minute after the window
// resets. PREFIX budget:open:BUDGET:KEY is a sorted set of open sessions scored by when their
// reserved time ends (Unix microseconds); expired members are dropped when a reservation
// looks, and the set expires a minute after its latest end. Budget names and keys are
// query-escaped, so a ':' in a key cannot make two claims share a key.
//
// Times come from the now the caller passes, not Redis's clock, so windows and open sessions
// agree with the rest of the process (and with Memory in tests); microseconds are the unit.
type Redis struct {
	client *redis.Client
	prefix string
	// Timeout bounds each call; past it the call fails with ErrStore. Set before first use.
	Timeout time.Duration
}

var _ Store = (*Redis)(nil)

// NewRedis returns a store on client, its keys starting with prefix (DefaultPrefix when "").
func NewRedis(client *redis.Client, prefix string) *Redis {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &Redis{client: client, prefix: prefix, Timeout: DefaultTimeout}
}

// reserveScript takes the caller's rate limit when one is given, checks every claim, then
// spends on every claim, or on none.
//
// KEYS: per claim i, KEYS[2i-1] its counter and KEYS[2i] its open sessions; then, with a rate
// limit, the caller's theoretical arrival time (µs) last.
// ARGV: [1] now (µs), [2] seconds asked, [3] a member name unique to this reservation,
// [4] MinSeconds, [5] the open sets' extra life (ms), [6] the rate limit's interval between
// requests (µs; 0 is no rate limit), [7] its burst; then per claim i from a = 7+4(i-1):
// ARGV[a+1] sessions limit, [a+2] seconds limit (minutes × 60), [a+3] concurrent limit,
// [a+4] the counter's life (ms, to its window's reset plus slack); 0 is no limit.
//
// Returns {1, seconds granted}, {2, µs until the rate limit allows a request}, or {0, claim
// index, what (1 sessions, 2 minutes, 3 concurrent), earliest open session's end (µs) for 3}.
var reserveScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local grant = tonumber(ARGV[2])
local interval, burst = tonumber(ARGV[6]), tonumber(ARGV[7])
local n = #KEYS / 2
if interval > 0 then
  -- The rate limit (GCRA), taken first as the service's own --rate-limit would be.
  local rate = KEYS[#KEYS]
  n = (#KEYS - 1) / 2
  local tat = tonumber(redis.call('GET', rate) or ARGV[1])
  if tat < now then tat = now end
  local next = tat + interval
  local allowAt = next - burst * interval
  if now < allowAt then
    return {2, math.ceil(allowAt - now)}
  end
  redis.call('SET', rate, string.format('%.0f', next), 'PX', string.format('%.0f', math.ceil((next - now) / 1000)))
end
for i = 1, n do
  local a = 7 + (i - 1) * 4
  local sessions, seconds, concurrent = tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3])
  local used = KEYS[2*i-1]
  if sessions > 0 and tonumber(redis.call('HGET', used, 's') or '0') >= sessions then
    return {0, i, 1, 0}
  end
  if seconds > 0 then
    local left = seconds - tonumber(redis.call('HGET', used, 't') or '0')
    if left < tonumber(ARGV[4]) then
      return {0, i, 2, 0}
    end
    if left < grant then grant = left end
  end
  if concurrent > 0 then
    local open = KEYS[2*i]
    redis.call('ZREMRANGEBYSCORE', open, '-inf', ARGV[1])
    if redis.call('ZCARD', open) >= concurrent then
      local first = redis.call('ZRANGE', open, 0, 0, 'WITHSCORES')
      return {0, i, 3, tonumber(first[2])}
    end
  end
end
local ends = now + grant * 1000000
for i = 1, n do
  local a = 7 + (i - 1) * 4
  local used, open = KEYS[2*i-1], KEYS[2*i]
  if tonumber(ARGV[a+1]) > 0 or tonumber(ARGV[a+2]) > 0 then
    redis.call('HINCRBY', used, 's', 1)
    redis.call('HINCRBY', used, 't', grant)
    redis.call('PEXPIRE', used, ARGV[a+4])
  end
  if tonumber(ARGV[a+3]) > 0 then
    redis.call('ZADD', open, string.format('%.0f', ends), ARGV[3] .. ':' .. i)
    local last = redis.call('ZRANGE', open, -1, -1, 'WITHSCORES')
    redis.call('PEXPIRE', open, string.format('%.0f', math.ceil((tonumber(last[2]) - now) / 1000) + tonumber(ARGV[5])))
  end
end
return {1, grant}
`)

// releaseScript gives back one reservation: a session and its seconds on each counter that
// still exists (never below zero), and one open session ending at its end time.
//
// KEYS: as for reserveScript. ARGV: [1] seconds granted, [2] the end time (µs).
var releaseScript = redis.NewScript(`
local seconds = tonumber(ARGV[1])
for i = 1, #KEYS / 2 do
  local used, open = KEYS[2*i-1], KEYS[2*i]
  if redis.call('EXISTS', used) == 1 then
    if redis.call('HINCRBY', used, 's', -1) < 0 then redis.call('HSET', used, 's', 0) end
    if redis.call('HINCRBY', used, 't', -seconds) < 0 then redis.call('HSET', used, 't', 0) end
  end
  local m = redis.call('ZRANGEBYSCORE', open, ARGV[2], ARGV[2], 'LIMIT', 0, 1)
  if m[1] then redis.call('ZREM', open, m[1]) end
end
return 1
`)

// Reserve implements Store.
func (r *Redis) Reserve(ctx context.Context, now time.Time, claims []Claim, seconds int) (Reservation, error) {
	return r.ReserveThrottled(ctx, now, claims, seconds, nil)
}

// Throttle is a rate limit taken in the same step as a request's budgets: Interval between
// requests at the sustained rate, and Burst of them at once, for the caller Key. With both in
// Redis, a token request then costs one round trip.
type Throttle struct {
	Key      string
	Interval time.Duration
	Burst    int
}

// Throttled is a request over its rate limit; Wait is until one would be allowed.
type Throttled struct{ Wait time.Duration }

func (t *Throttled) Error() string { return "rate limited: retry in " + t.Wait.String() }

// ReserveThrottled is Reserve with the caller's rate limit taken first, in the same script:
// a request over its rate is a *Throttled error and spends no budget. A nil throttle is
// Reserve.
func (r *Redis) ReserveThrottled(ctx context.Context, now time.Time, claims []Claim, seconds int, t *Throttle) (Reservation, error) {
	now = now.Truncate(time.Microsecond)
	if len(claims) == 0 && t == nil {
		return Reservation{Claims: claims, Seconds: seconds, Until: now.Add(time.Duration(seconds) * time.Second)}, nil
	}
	keys := r.keys(claims)
	nowUS := now.UnixMicro()
	args := make([]any, 0, 7+4*len(claims))
	args = append(args, nowUS, seconds, strconv.FormatUint(rand.Uint64(), 36), MinSeconds, keySlack.Milliseconds(), 0, 0)
	if t != nil {
		keys = append(keys, r.prefix+"rate:"+t.Key)
		args[5], args[6] = float64(t.Interval)/float64(time.Microsecond), t.Burst
	}
	for _, c := range claims {
		b := c.Budget
		life := c.Reset.Sub(now) + keySlack
		args = append(args, b.Sessions, b.Minutes*60, b.Concurrent, max(life.Milliseconds(), 1))
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	res, err := reserveScript.Run(ctx, r.client, keys, args...).Int64Slice()
	if err != nil {
		return Reservation{}, fmt.Errorf("%w: reserving %s: %w", ErrStore, Names(claims), err)
	}
	if len(res) == 2 && res[0] == 1 {
		grant := int(res[1])
		return Reservation{Claims: claims, Seconds: grant, Until: now.Add(time.Duration(grant) * time.Second)}, nil
	}
	if len(res) == 2 && res[0] == 2 {
		return Reservation{}, &Throttled{Wait: time.Duration(res[1]) * time.Microsecond}
	}
	if len(res) != 4 || res[1] < 1 || int(res[1]) > len(claims) {
		return Reservation{}, fmt.Errorf("%w: reserving %s: unexpected reply %v", ErrStore, Names(claims), res)
	}
	c := claims[res[1]-1]
	b := c.Budget
	refusal := &Refusal{Budget: b.Name, Key: c.Key, RetryAfter: c.Reset.Sub(now)}
	switch res[2] {
	case 1:
		refusal.What = fmt.Sprintf("%d sessions per %s used", b.Sessions, b.Window)
	case 2:
		refusal.What = fmt.Sprintf("%d minutes per %s used", b.Minutes, b.Window)
	default:
		refusal.What = fmt.Sprintf("%d sessions open at once", b.Concurrent)
		refusal.RetryAfter = time.UnixMicro(res[3]).Sub(now)
	}
	return Reservation{}, refusal
}

// Release implements Store.
func (r *Redis) Release(ctx context.Context, res Reservation) error {
	if len(res.Claims) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	err := releaseScript.Run(ctx, r.client, r.keys(res.Claims), res.Seconds, res.Until.UnixMicro()).Err()
	if err != nil {
		return fmt.Errorf("%w: releasing %s: %w", ErrStore, Names(res.Claims), err)
	}
	return nil
}

// Remaining implements Store.
func (r *Redis) Remaining(ctx context.Context, now time.Time, claims []Claim) ([]Left, error) {
	out := make([]Left, len(claims))
	if len(claims) == 0 {
		return out, nil
	}
	now = now.Truncate(time.Microsecond)
	after := "(" + strconv.FormatInt(now.UnixMicro(), 10)
	ctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	used := make([]*redis.SliceCmd, len(claims))
	open := make([]*redis.IntCmd, len(claims))
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range claims {
			if c.Budget.Sessions > 0 || c.Budget.Minutes > 0 {
				used[i] = p.HMGet(ctx, r.usedKey(c), "s", "t")
			}
			if c.Budget.Concurrent > 0 {
				open[i] = p.ZCount(ctx, r.openKey(c), after, "+inf")
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: reading what %s have left: %w", ErrStore, Names(claims), err)
	}
	for i, c := range claims {
		b := c.Budget
		l := Left{Sessions: -1, Seconds: -1, Concurrent: -1}
		var sessions, seconds int
		if used[i] != nil {
			vals := used[i].Val()
			sessions, seconds = atoi(vals[0]), atoi(vals[1])
		}
		if b.Sessions > 0 {
			l.Sessions = max(b.Sessions-sessions, 0)
		}
		if b.Minutes > 0 {
			l.Seconds = max(b.Minutes*60-seconds, 0)
		}
		if b.Concurrent > 0 {
			l.Concurrent = max(b.Concurrent-int(open[i].Val()), 0)
		}
		out[i] = l
	}
	return out, nil
}

func (r *Redis) timeout() time.Duration {
	if r.Timeout <= 0 {
		return DefaultTimeout
	}
	return r.Timeout
}

// keys lists each claim's counter and open sessions, in the order the scripts read them.
func (r *Redis) keys(claims []Claim) []string {
	keys := make([]string, 0, 2*len(claims))
	for _, c := range claims {
		keys = append(keys, r.usedKey(c), r.openKey(c))
	}
	return keys
}

func (r *Redis) usedKey(c Claim) string {
	return r.prefix + "budget:used:" + url.QueryEscape(c.Budget.Name) + ":" + url.QueryEscape(c.Key) + ":" + strconv.FormatInt(c.Start.Unix(), 10)
}

func (r *Redis) openKey(c Claim) string {
	return r.prefix + "budget:open:" + url.QueryEscape(c.Budget.Name) + ":" + url.QueryEscape(c.Key)
}

// atoi reads a hash field HMGET returned: a string, or nil when absent.
func atoi(v any) int {
	s, _ := v.(string)
	n, _ := strconv.Atoi(s)
	return n
}
