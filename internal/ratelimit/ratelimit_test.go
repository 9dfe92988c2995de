package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestParseSpec(t *testing.T) {
	for in, want := range map[string]Spec{
		"10/min": {10, time.Minute}, "5/s": {5, time.Second}, " 100 / h ": {100, time.Hour}, "1/sec": {1, time.Second}, "3/hour": {3, time.Hour},
	} {
		if got, err := ParseSpec(in); err != nil || got != want {
			t.Errorf("ParseSpec(%q) = %v, %v; want %v", in, got, err, want)
		}
		// String writes what ParseSpec reads back.
		if again, err := ParseSpec(want.String()); err != nil || again != want {
			t.Errorf("ParseSpec(%q) = %v, %v; want %v", want.String(), again, err, want)
		}
	}
	if got := (Spec{10, time.Minute}).String(); got != "10/min" {
		t.Errorf("String() = %q, want 10/min", got)
	}
	for _, bad := range []string{"", "10", "10/day", "0/min", "-1/s", "ten/min", "10/"} {
		if _, err := ParseSpec(bad); err == nil {
			t.Errorf("ParseSpec(%q) accepted", bad)
		}
	}
}

func TestBurstThenRetryAfter(t *testing.T) {
	l, err := New(Spec{10, time.Minute}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if ok, _ := l.Allow("user:a"); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.Allow("user:a")
	if ok {
		t.Fatal("the 11th request in a minute was allowed at 10/min")
	}
	// One request every 6 s refills; the wait is what is left of it.
	if wait <= 5*time.Second || wait > 6*time.Second {
		t.Errorf("Retry-After wait %s, want about 6s", wait)
	}
	// A refused request takes nothing from the bucket.
	if _, again := l.Allow("user:a"); again < wait-time.Second {
		t.Errorf("a refused request consumed a token: wait went from %s to %s", wait, again)
	}
}

func TestKeysAreIsolated(t *testing.T) {
	l, _ := New(Spec{2, time.Hour}, 0, 0)
	l.Allow("user:a")
	l.Allow("user:a")
	if ok, _ := l.Allow("user:a"); ok {
		t.Fatal("user:a over its limit was allowed")
	}
	for _, key := range []string{"user:b", "ip:192.0.2.1", "ip:192.0.2.2"} {
		if ok, _ := l.Allow(key); !ok {
			t.Errorf("%s refused because user:a used its own limit", key)
		}
	}
}

func TestBurstOverride(t *testing.T) {
	l, _ := New(Spec{60, time.Minute}, 3, 0)
	for i := range 3 {
		if ok, _ := l.Allow("k"); !ok {
			t.Fatalf("request %d refused within a burst of 3", i+1)
		}
	}
	if ok, _ := l.Allow("k"); ok {
		t.Error("a 4th request passed a burst of 3")
	}
}

// TestMemoryStaysFlat sends ten times more distinct keys than the limiter may hold: it never
// holds more than its maximum, so its memory (a fixed-size limiter per key) stays flat however
// many callers it has seen.
func TestMemoryStaysFlat(t *testing.T) {
	const maxKeys = 1_000
	l, _ := New(Spec{10, time.Minute}, 0, maxKeys)
	for i := range 10 * maxKeys {
		l.Allow(fmt.Sprintf("ip:10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
		if n := l.Len(); n > maxKeys {
			t.Fatalf("after %d distinct keys, %d keys held, want at most %d", i+1, n, maxKeys)
		}
	}
	if n := l.Len(); n != maxKeys {
		t.Errorf("%d keys held after %d distinct keys, want the maximum, %d", n, 10*maxKeys, maxKeys)
	}
}

func TestLeastRecentlySeenKeyIsDropped(t *testing.T) {
	l, _ := New(Spec{1, time.Hour}, 0, 3)
	for _, k := range []string{"a", "b", "c"} {
		l.Allow(k)
	}
	l.Allow("a") // a is now the most recently seen; b the least
	l.Allow("d")
	if l.Len() != 3 {
		t.Fatalf("%d keys held, want 3", l.Len())
	}
	if ok, _ := l.Allow("a"); ok {
		t.Error("a, recently seen and over its limit, was forgotten")
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Error("b, the least recently seen, was not the one dropped")
	}
}
