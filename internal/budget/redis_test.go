package budget_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/persona-router/persona-router/internal/budget"
	"github.com/persona-router/persona-router/internal/redistest"
)

// t0 is the tests' clock: stores take the time from the caller, so tests move it by hand.
var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func claim(b *budget.Budget, key string, now time.Time) budget.Claim {
	start, end := b.Window.Bounds(now)
	return budget.Claim{Budget: b, Key: key, Start: start, Reset: end}
}

func window(s string) budget.Window {
	w, err := budget.ParseWindow(s)
	if err != nil {
		panic(err)
	}
	return w
}

// backend opens n handles on one empty store: for Redis, n clients as n replicas would.
type backend struct {
	name string
	open func(t testing.TB, n int) []budget.Store
}

// backends are Memory and Redis, on one redis-server for the calling test; each open gets its
// own key prefix, so the scenarios do not see each other's counts. The Redis deadline is long:
// the scenarios are about counting, and goroutines dialling dozens of connections at once
// under the race detector can take longer than 50 ms.
func backends(t testing.TB) []backend {
	srv := redistest.Start(t)
	var seq atomic.Int64
	return []backend{
		{"memory", func(_ testing.TB, n int) []budget.Store {
			m := budget.NewMemory()
			return slices.Repeat([]budget.Store{m}, n)
		}},
		{"redis", func(t testing.TB, n int) []budget.Store {
			prefix := fmt.Sprintf("test%d:", seq.Add(1))
			stores := make([]budget.Store, n)
			for i := range stores {
				r := budget.NewRedis(dial(t, srv.URL(), ""), prefix)
				r.Timeout = 5 * time.Second
				stores[i] = r
			}
			return stores
		}},
	}
}

func dial(t testing.TB, url, password string) *redis.Client {
	t.Helper()
	c, err := budget.DialRedis(url, password)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func reserve(t *testing.T, s budget.Store, now time.Time, claims []budget.Claim, seconds int) budget.Reservation {
	t.Helper()
	r, err := s.Reserve(context.Background(), now, claims, seconds)
	if err != nil {
		t.Fatalf("Reserve(%s, %d s) at %s: %v", budget.Names(claims), seconds, now.Format(time.TimeOnly), err)
	}
	return r
}

func refuse(t *testing.T, s budget.Store, now time.Time, claims []budget.Claim, seconds int) *budget.Refusal {
	t.Helper()
	r, err := s.Reserve(context.Background(), now, claims, seconds)
	var refusal *budget.Refusal
	if !errors.As(err, &refusal) {
		t.Fatalf("Reserve(%s, %d s) at %s = %+v, %v; want a refusal", budget.Names(claims), seconds, now.Format(time.TimeOnly), r, err)
	}
	return refusal
}

func wantLeft(t *testing.T, s budget.Store, now time.Time, claims []budget.Claim, want ...budget.Left) {
	t.Helper()
	got, err := s.Remaining(context.Background(), now, claims)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Remaining at %s = %+v, want %+v", now.Format(time.TimeOnly), got, want)
	}
}

func wantRefusal(t *testing.T, got *budget.Refusal, want budget.Refusal) {
	t.Helper()
	if *got != want {
		t.Errorf("refusal %+v, want %+v", *got, want)
	}
}

// scenarios are written once and run against every store, so Memory and Redis agree.
var scenarios = []struct {
	name     string
	replicas int
	run      func(t *testing.T, s []budget.Store)
}{
	{"sessions per window", 1, func(t *testing.T, s []budget.Store) {
		b := &budget.Budget{Name: "hourly", Window: window("1h"), Sessions: 3}
		now := t0.Add(10 * time.Minute)
		c := []budget.Claim{claim(b, "u1", now)}
		for range 3 {
			if r := reserve(t, s[0], now, c, 600); r.Seconds != 600 || !r.Until.Equal(now.Add(10*time.Minute)) {
				t.Errorf("granted %d s until %s, want 600 s until %s", r.Seconds, r.Until, now.Add(10*time.Minute))
			}
		}
		wantRefusal(t, refuse(t, s[0], now, c, 600), budget.Refusal{Budget: "hourly", Key: "u1", What: "3 sessions per 1h0m0s used", RetryAfter: 50 * time.Minute})
		wantLeft(t, s[0], now, c, budget.Left{Sessions: 0, Seconds: -1, Concurrent: -1})
		reserve(t, s[0], now, []budget.Claim{claim(b, "u2", now)}, 600)
		next := t0.Add(time.Hour)
		c = []budget.Claim{claim(b, "u1", next)}
		reserve(t, s[0], next, c, 600)
		wantLeft(t, s[0], next, c, budget.Left{Sessions: 2, Seconds: -1, Concurrent: -1})
	}},
	{"minutes are clamped to what is left", 1, func(t *testing.T, s []budget.Store) {
		b := &budget.Budget{Name: "daily", Window: window("day"), Minutes: 10}
		c := []budget.Claim{claim(b, "u1", t0)}
		if r := reserve(t, s[0], t0, c, 400); r.Seconds != 400 {
			t.Errorf("granted %d s, want 400", r.Seconds)
		}
		if r := reserve(t, s[0], t0, c, 400); r.Seconds != 200 || !r.Until.Equal(t0.Add(200*time.Second)) {
			t.Errorf("granted %d s until %s, want the 200 s left", r.Seconds, r.Until)
		}
		wantLeft(t, s[0], t0, c, budget.Left{Sessions: -1, Seconds: 0, Concurrent: -1})
		wantRefusal(t, refuse(t, s[0], t0, c, 400), budget.Refusal{Budget: "daily", Key: "u1", What: "10 minutes per day used", RetryAfter: 14 * time.Hour})
	}},
	{"under a minute left refuses", 1, func(t *testing.T, s []budget.Store) {
		b := &budget.Budget{Name: "daily", Window: window("day"), Minutes: 2}
		c := []budget.Claim{claim(b, "u1", t0)}
		reserve(t, s[0], t0, c, 61)
		wantLeft(t, s[0], t0, c, budget.Left{Sessions: -1, Seconds: 59, Concurrent: -1})
		wantRefusal(t, refuse(t, s[0], t0, c, 30), budget.Refusal{Budget: "daily", Key: "u1", What: "2 minutes per day used", RetryAfter: 14 * time.Hour})
	}},
	{"the tightest minutes budget sets the grant", 1, func(t *testing.T, s []budget.Store) {
		a := &budget.Budget{Name: "a", Window: window("day"), Minutes: 10}
		b := &budget.Budget{Name: "b", Window: window("week"), Minutes: 5}
		c := []budget.Claim{claim(a, "u1", t0), claim(b, "u1", t0)}
		if r := reserve(t, s[0], t0, c, 600); r.Seconds != 300 {
			t.Errorf("granted %d s, want 300", r.Seconds)
		}
		wantLeft(t, s[0], t0, c, budget.Left{Sessions: -1, Seconds: 300, Concurrent: -1}, budget.Left{Sessions: -1, Seconds: 0, Concurrent: -1})
	}},
	{"concurrent slots free after the reserved time", 1, func(t *testing.T, s []budget.Store) {
		b := &budget.Budget{Name: "open", Concurrent: 2}
		at := func(d time.Duration) (time.Time, []budget.Claim) {
			now := t0.Add(d)
			return now, []budget.Claim{claim(b, "global", now)}
		}
		now, c := at(0)
		reserve(t, s[0], now, c, 10)
		now, c = at(time.Second)
		reserve(t, s[0], now, c, 20)
		now, c = at(2 * time.Second)
		wantRefusal(t, refuse(t, s[0], now, c, 10), budget.Refusal{Budget: "open", Key: "global", What: "2 sessions open at once", RetryAfter: 8 * time.Second})
		wantLeft(t, s[0], now, c, budget.Left{Sessions: -1, Seconds: -1, Concurrent: 0})
		now, c = at(10 * time.Second)
		reserve(t, s[0], now, c, 10)
		wantLeft(t, s[0], now, c, budget.Left{Sessions: -1, Seconds: -1, Concurrent: 0})
		now, c = at(20 * time.Second)
		wantLeft(t, s[0], now, c, budget.Left{Sessions: -1, Seconds: -1, Concurrent: 1})
		now, c = at(21 * time.Second)
		wantLeft(t, s[0], now, c, budget.Left{Sessions: -1, Seconds: -1, Concurrent: 2})
	}},
	{"remaining leaves open sessions as they are", 1, func(t *testing.T, s []budget.Store) {
		b := &budget.Budget{Name: "open", Concurrent: 2}
		c := []budget.Claim{claim(b, "u1", t0)}
		reserve(t, s[0], t0, c, 10)
		reserve(t, s[0], t0, c, 20)
		now := t0.Add(10 * time.Second)
		c = []budget.Claim{claim(b, "u1", now)}
		wantLeft(t, s[0], now, c, budget.Left{Sessions: -1, Seconds: -1, Concurrent: 1})
		reserve(t, s[0], now, c, 10)
	}},
	{"release refunds", 1, func(t *testing.T, s []budget.Store) {
		b := &budget.Budget{Name: "all", Window: window("day"), Sessions: 1, Minutes: 10, Concurrent: 1}
		c := []budget.Claim{claim(b, "u1", t0)}
		r := reserve(t, s[0], t0, c, 300)
		wantLeft(t, s[0], t0, c, budget.Left{Sessions: 0, Seconds: 300, Concurrent: 0})
		refuse(t, s[0], t0, c, 300)
		if err := s[0].Release(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		wantLeft(t, s[0], t0, c, budget.Left{Sessions: 1, Seconds: 600, Concurrent: 1})
		reserve(t, s[0], t0, c, 300)
	}},
	{"release frees only its own open session", 1, func(t *testing.T, s []budget.Store) {
		b := &budget.Budget{Name: "open", Concurrent: 3}
		c := []budget.Claim{claim(b, "u1", t0)}
		reserve(t, s[0], t0, c, 100)
		r := reserve(t, s[0], t0, c, 200)
		reserve(t, s[0], t0, c, 200)
		if err := s[0].Release(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		wantLeft(t, s[0], t0, c, budget.Left{Sessions: -1, Seconds: -1, Concurrent: 1})
		now := t0.Add(100 * time.Second)
		wantLeft(t, s[0], now, []budget.Claim{claim(b, "u1", now)}, budget.Left{Sessions: -1, Seconds: -1, Concurrent: 2})
	}},
	{"a refusal by one budget spends nothing on another", 1, func(t *testing.T, s []budget.Store) {
		a := &budget.Budget{Name: "a", Window: window("day"), Sessions: 5, Minutes: 10, Concurrent: 5}
		b := &budget.Budget{Name: "b", Window: window("day"), Sessions: 1}
		reserve(t, s[0], t0, []budget.Claim{claim(b, "u1", t0)}, 60)
		c := []budget.Claim{claim(a, "u1", t0), claim(b, "u1", t0)}
		wantRefusal(t, refuse(t, s[0], t0, c, 300), budget.Refusal{Budget: "b", Key: "u1", What: "1 sessions per day used", RetryAfter: 14 * time.Hour})
		wantLeft(t, s[0], t0, c, budget.Left{Sessions: 5, Seconds: 600, Concurrent: 5}, budget.Left{Sessions: 0, Seconds: -1, Concurrent: -1})
	}},
	{"no claims spend nothing", 1, func(t *testing.T, s []budget.Store) {
		r := reserve(t, s[0], t0, nil, 600)
		if r.Seconds != 600 || !r.Until.Equal(t0.Add(10*time.Minute)) {
			t.Errorf("granted %+v, want 600 s", r)
		}
	}},
	{"90 concurrent requests over three replicas, 30 sessions", 3, func(t *testing.T, s []budget.Store) {
		b := &budget.Budget{Name: "burst", Window: window("day"), Sessions: 30}
		c := []budget.Claim{claim(b, "u1", t0)}
		var granted, refused atomic.Int64
		var wg sync.WaitGroup
		for i := range 90 {
			wg.Go(func() {
				_, err := s[i%3].Reserve(context.Background(), t0, c, 600)
				var refusal *budget.Refusal
				switch {
				case err == nil:
					granted.Add(1)
				case errors.As(err, &refusal):
					refused.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if granted.Load() != 30 || refused.Load() != 60 {
			t.Errorf("%d granted, %d refused; want 30 and 60", granted.Load(), refused.Load())
		}
		wantLeft(t, s[1], t0, c, budget.Left{Sessions: 0, Seconds: -1, Concurrent: -1})
	}},
}

func TestStores(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) { sc.run(t, be.open(t, sc.replicas)) })
			}
		})
	}
}

func TestRedisKeysArePrefixedAndExpire(t *testing.T) {
	srv := redistest.Start(t)
	c := dial(t, srv.URL(), "")
	s := budget.NewRedis(c, "")
	b := &budget.Budget{Name: "free daily", Window: window("1h"), Sessions: 3, Concurrent: 1}
	now := time.Now()
	cl := claim(b, "user:1", now)
	r, err := s.Reserve(context.Background(), now, []budget.Claim{cl}, 600)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	want := []string{
		"persona-router:budget:open:free+daily:user%3A1",
		fmt.Sprintf("persona-router:budget:used:free+daily:user%%3A1:%d", cl.Start.Unix()),
	}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys %q, want %q", keys, want)
	}
	// The counter lives until its window resets, plus a minute; the open sessions until the
	// latest one ends, plus a minute.
	for key, most := range map[string]time.Duration{want[0]: 11 * time.Minute, want[1]: time.Until(cl.Reset) + time.Minute} {
		ttl := c.PTTL(ctx, key).Val()
		if ttl <= 0 || ttl > most+time.Second || ttl < most-5*time.Second {
			t.Errorf("%s expires in %s, want about %s", key, ttl, most)
		}
	}
	if err := s.Release(ctx, r); err != nil {
		t.Fatal(err)
	}
	// Release empties the open set, which Redis then deletes; the counter keeps its expiry.
	if keys := c.Keys(ctx, "*").Val(); len(keys) != 1 || c.PTTL(ctx, keys[0]).Val() <= 0 {
		t.Errorf("after release: keys %q without an expiry", keys)
	}
}

func TestRedisUnreachableThenBack(t *testing.T) {
	srv := redistest.Start(t)
	s := budget.NewRedis(dial(t, srv.URL(), ""), "")
	b := &budget.Budget{Name: "daily", Window: window("day"), Sessions: 100}
	ctx := context.Background()
	try := func() (budget.Reservation, error) {
		now := time.Now()
		return s.Reserve(ctx, now, []budget.Claim{claim(b, "u1", now)}, 600)
	}
	r, err := try()
	if err != nil {
		t.Fatal(err)
	}
	checkDown := func(what string) {
		t.Helper()
		start := time.Now()
		_, err := try()
		// The bound is loose for slow CI machines; what matters is the seconds of go-redis's
		// own defaults are not waited.
		if took := time.Since(start); !errors.Is(err, budget.ErrStore) || took > time.Second {
			t.Errorf("%s: Reserve = %v after %s; want ErrStore within the deadline", what, err, took)
		} else {
			t.Logf("%s: Reserve failed after %s: %v", what, took, err)
		}
		if err := s.Release(ctx, r); !errors.Is(err, budget.ErrStore) {
			t.Errorf("%s: Release = %v, want ErrStore", what, err)
		}
		if _, err := s.Remaining(ctx, time.Now(), r.Claims); !errors.Is(err, budget.ErrStore) {
			t.Errorf("%s: Remaining = %v, want ErrStore", what, err)
		}
	}
	waitUp := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := try(); err == nil {
				return
			} else if time.Now().After(deadline) {
				t.Fatalf("%s: still failing after 10 s: %v", what, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	srv.Pause()
	checkDown("paused")
	srv.Resume()
	waitUp("resumed")

	srv.Stop()
	checkDown("stopped")
	srv.Restart()
	waitUp("restarted")
}

func TestDialRedis(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "s3cret")
	ctx := context.Background()
	for _, tc := range []struct {
		url, password string
		ok            bool
	}{
		{srv.URL(), "s3cret", true},
		{"redis://:s3cret@" + srv.Addr(), "", true},
		{"redis://:s3cret@" + srv.Addr() + "/0", "wrong", true}, // the URL's password wins
		{srv.URL(), "", false},
		{srv.URL(), "wrong", false},
	} {
		err := dial(t, tc.url, tc.password).Ping(ctx).Err()
		if (err == nil) != tc.ok {
			t.Errorf("DialRedis(%q, %q): PING = %v, want ok=%v", tc.url, tc.password, err, tc.ok)
		}
	}
	for _, bad := range []string{"", "localhost:6379", "http://localhost:6379", "unix:///run/redis.sock", "redis://"} {
		if _, err := budget.DialRedis(bad, ""); err == nil {
			t.Errorf("DialRedis(%q) accepted", bad)
		}
	}
	if _, err := budget.DialRedis("redis://:hunter2@host:x", ""); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("a bad URL's error %v should not show its password", err)
	}
	c := dial(t, "rediss://cache.example:6380/2?dial_timeout=3s", "")
	opt := c.Options()
	if opt.TLSConfig == nil || opt.TLSConfig.ServerName != "cache.example" || opt.TLSConfig.MinVersion != tls.VersionTLS12 {
		t.Errorf("rediss:// TLS config %+v, want TLS 1.2+ for cache.example", opt.TLSConfig)
	}
	if opt.DB != 2 || opt.DialTimeout != 3*time.Second || opt.ReadTimeout != 250*time.Millisecond || !opt.ContextTimeoutEnabled || opt.MaxRetries != 0 {
		t.Errorf("options db=%d dial=%s read=%s ctx=%v retries=%d", opt.DB, opt.DialTimeout, opt.ReadTimeout, opt.ContextTimeoutEnabled, opt.MaxRetries)
	}
}

// BenchmarkReserve is a token request's budget step: two budgets (sessions and minutes per day,
// open sessions for everyone) over 1,000 users, each store in the same run. p50-µs and p99-µs
// are the latency of one Reserve.
func BenchmarkReserve(b *testing.B) {
	daily := &budget.Budget{Name: "daily", Window: window("day"), Sessions: 1 << 30, Minutes: 1 << 30}
	open := &budget.Budget{Name: "open", Concurrent: 1 << 30}
	users := make([]string, 1000)
	for i := range users {
		users[i] = fmt.Sprintf("user-%d", i)
	}
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) {
			s := be.open(b, 1)[0]
			ctx := context.Background()
			took := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				claims := []budget.Claim{claim(daily, users[i%len(users)], now), claim(open, "global", now)}
				start := time.Now()
				if _, err := s.Reserve(ctx, now, claims, 1); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
				i++
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds())/1e3, "p99-µs")
		})
	}
}

// With the rate limit folded in, a request over its rate spends no budget, in the same one
// script as the budgets.
func TestReserveThrottled(t *testing.T) {
	srv := redistest.Start(t)
	store := budget.NewRedis(dial(t, srv.URL(), ""), "throttle-test:")
	store.Timeout = 5 * time.Second
	b := &budget.Budget{Name: "daily", Sessions: 10, Window: budget.Window{Calendar: "day"}}
	now := time.Now()
	start, end := b.Window.Bounds(now)
	claims := []budget.Claim{{Budget: b, Key: "u1", Start: start, Reset: end}}
	throttle := &budget.Throttle{Key: "user:u1", Interval: time.Second, Burst: 2}
	ctx := context.Background()
	for i := range 2 {
		if _, err := store.ReserveThrottled(ctx, now, claims, 60, throttle); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
	}
	_, err := store.ReserveThrottled(ctx, now, claims, 60, throttle)
	var throttled *budget.Throttled
	if !errors.As(err, &throttled) || throttled.Wait <= 0 || throttled.Wait > time.Second {
		t.Fatalf("third request at once: %v, want throttled for under a second", err)
	}
	left, err := store.Remaining(ctx, now, claims)
	if err != nil || left[0].Sessions != 8 {
		t.Errorf("sessions left = %+v %v, want 8: a throttled request spends nothing", left, err)
	}
	// A second later one more request is allowed; no claim at all still takes the rate.
	if _, err := store.ReserveThrottled(ctx, now.Add(time.Second), nil, 60, throttle); err != nil {
		t.Errorf("a second later, without claims: %v", err)
	}
	if _, err := store.ReserveThrottled(ctx, now.Add(time.Second), nil, 60, throttle); !errors.As(err, &throttled) {
		t.Errorf("again at once, without claims: %v, want throttled", err)
	}
}
