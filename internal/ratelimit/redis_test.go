package ratelimit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/persona-router/persona-router/internal/budget"
	"github.com/persona-router/persona-router/internal/redistest"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func dial(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	return dialURL(t, srv.URL())
}

func dialURL(t *testing.T, url string) *redis.Client {
	t.Helper()
	c, err := budget.DialRedis(url, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// replicas returns n limits sharing srv, as n replicas of the server would, on the clock now.
// Their deadline and pool timeout are long: these tests are about counting, and a burst of
// goroutines dialling dozens of connections at once under the race detector, on a busy
// machine, can take longer than 50 ms, or wait longer than 100 ms for a connection.
func replicas(t *testing.T, srv *redistest.Server, n int, spec Spec, burst int, now func() time.Time) []*Redis {
	t.Helper()
	out := make([]*Redis, n)
	for i := range out {
		r, err := NewRedis(dialURL(t, srv.URL()+"?pool_timeout=5s"), "", spec, burst)
		if err != nil {
			t.Fatal(err)
		}
		r.now, r.Timeout = now, 5*time.Second
		out[i] = r
	}
	return out
}

func take(t *testing.T, l Limit, key string) (bool, time.Duration) {
	t.Helper()
	ok, wait, err := l.Take(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return ok, wait
}

// TestRedisMatchesLimiter takes a burst from both limits: each allows exactly the burst at
// once, and the in-process one's waits are those Redis gives on a stopped clock.
func TestRedisMatchesLimiter(t *testing.T) {
	srv := redistest.Start(t)
	for _, tc := range []struct {
		spec  Spec
		burst int
	}{{Spec{10, time.Minute}, 0}, {Spec{60, time.Minute}, 5}, {Spec{3, time.Second}, 1}} {
		mem, err := New(tc.spec, tc.burst, 0)
		if err != nil {
			t.Fatal(err)
		}
		shared := replicas(t, srv, 1, tc.spec, tc.burst, func() time.Time { return t0 })[0]
		key := "user:" + tc.spec.Per.String() + "-" + string(rune('a'+tc.burst))
		count := func(l Limit) (allowed int, wait time.Duration) {
			for range 100 {
				ok, w := take(t, l, key)
				if ok {
					allowed++
				} else {
					wait = w
				}
			}
			return allowed, wait
		}
		memAllowed, memWait := count(mem)
		redisAllowed, redisWait := count(shared)
		interval := tc.spec.Per / time.Duration(tc.spec.Count)
		if memAllowed != redisAllowed || (redisWait-interval).Abs() > time.Millisecond || memWait > interval || memWait < interval-100*time.Millisecond {
			t.Errorf("%v burst %d: in process %d allowed, then wait %s; Redis %d, then %s; want the same count and a wait of %s",
				tc.spec, tc.burst, memAllowed, memWait, redisAllowed, redisWait, interval)
		}
	}
}

func TestRedisRefillAndKeys(t *testing.T) {
	srv := redistest.Start(t)
	var now atomic.Pointer[time.Time]
	now.Store(&t0)
	l := replicas(t, srv, 1, Spec{10, time.Minute}, 0, func() time.Time { return *now.Load() })[0]
	for i := range 10 {
		if ok, _ := take(t, l, "user:a"); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	if ok, wait := take(t, l, "user:a"); ok || wait != 6*time.Second {
		t.Fatalf("11th request: ok=%v wait %s; want refused, wait 6s", ok, wait)
	}
	later := t0.Add(4 * time.Second)
	now.Store(&later)
	// A refused request takes nothing: the wait only shrinks with time.
	if ok, wait := take(t, l, "user:a"); ok || wait != 2*time.Second {
		t.Fatalf("4 s later: ok=%v wait %s; want refused, wait 2s", ok, wait)
	}
	if ok, _ := take(t, l, "user:b"); !ok {
		t.Error("user:b refused because user:a used its own limit")
	}
	later = t0.Add(6 * time.Second)
	now.Store(&later)
	if ok, _ := take(t, l, "user:a"); !ok {
		t.Error("a request was refused after the bucket refilled one")
	}
	ctx := context.Background()
	c := dial(t, srv)
	keys := c.Keys(ctx, "*").Val()
	if len(keys) != 2 {
		t.Fatalf("keys %q, want persona-router:rate:user:a and :user:b", keys)
	}
	for _, key := range keys {
		// A key lives until its bucket would be full again: at most a minute here.
		if ttl := c.PTTL(ctx, key).Val(); ttl <= 0 || ttl > time.Minute {
			t.Errorf("%s expires in %s, want within a minute", key, ttl)
		}
	}
	if ttl := c.PTTL(ctx, "persona-router:rate:user:b").Val(); ttl <= 5*time.Second || ttl > 6*time.Second {
		t.Errorf("a key with one request taken expires in %s, want 6s (when its bucket is full again)", ttl)
	}
}

// TestRedisSharedByReplicas: three replicas sharing 60/min with a burst of 10 allow the burst
// once between them, and at most 60 + 10 over a minute.
func TestRedisSharedByReplicas(t *testing.T) {
	srv := redistest.Start(t)
	spec, burst := Spec{60, time.Minute}, 10

	at := replicas(t, srv, 3, spec, burst, func() time.Time { return t0 })
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			ok, _, err := at[i%3].Take(context.Background(), "user:burst")
			if err != nil {
				t.Error(err)
			}
			if ok {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if allowed.Load() != int64(burst) {
		t.Errorf("200 concurrent requests over 3 replicas: %d allowed, want the burst of %d", allowed.Load(), burst)
	}

	// 200 requests over the three, one every 300 ms: a minute.
	var tick atomic.Int64
	spread := replicas(t, srv, 3, spec, burst, func() time.Time { return t0.Add(time.Duration(tick.Load()) * 300 * time.Millisecond) })
	n := 0
	for i := range 200 {
		if ok, _ := take(t, spread[i%3], "user:minute"); ok {
			n++
		}
		tick.Add(1)
	}
	if n < spec.Count || n > spec.Count+burst {
		t.Errorf("200 requests over a minute and 3 replicas: %d allowed, want between %d and %d", n, spec.Count, spec.Count+burst)
	}
}

func TestRedisUnreachable(t *testing.T) {
	srv := redistest.Start(t)
	l := replicas(t, srv, 1, Spec{10, time.Minute}, 0, time.Now)[0]
	l.Timeout = DefaultTimeout
	take(t, l, "user:a")
	srv.Stop()
	start := time.Now()
	ok, _, err := l.Take(context.Background(), "user:a")
	if took := time.Since(start); !errors.Is(err, ErrStore) || ok || took > time.Second {
		t.Errorf("Redis stopped: Take = %v, %v after %s; want ErrStore within the deadline", ok, err, took)
	}
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, err := l.Take(context.Background(), "user:a"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("Redis restarted: still failing after 10 s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNewRedisRejects(t *testing.T) {
	if _, err := NewRedis(nil, "", Spec{10, time.Minute}, -1); err == nil {
		t.Error("a negative burst was accepted")
	}
	if _, err := NewRedis(nil, "", Spec{}, 0); err == nil {
		t.Error("a zero spec was accepted")
	}
}
