package budget

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// Claim is one budget a request spends, under one key, in the window that holds the request.
type Claim struct {
	Budget *Budget
	Key    string
	// Start and Reset bound the window the claim counts in.
	Start, Reset time.Time
}

// Store counts what keys have spent of their budgets. Reserve checks and spends in one step,
// so concurrent requests — in one process or across a fleet sharing the store — never spend
// more than a budget allows.
type Store interface {
	// Reserve checks every claim and, when all allow, spends for each one session, the
	// seconds granted of its minutes, and one open session until now plus those seconds. The
	// seconds granted are seconds, lowered to what the tightest minutes budget has left; a
	// budget with under 60 seconds left, no session or no open slot left refuses the whole
	// request with a *Refusal, and nothing is spent.
	Reserve(ctx context.Context, now time.Time, claims []Claim, seconds int) (Reservation, error)
	// Release gives a reservation back (the Anam call failed).
	Release(ctx context.Context, r Reservation) error
	// Remaining reports what each claim has left at now.
	Remaining(ctx context.Context, now time.Time, claims []Claim) ([]Left, error)
}

// Reservation is what one request spent.
type Reservation struct {
	Claims []Claim
	// Seconds is the session length granted: what the request asked, or less.
	Seconds int
	// Until is when the session's open slot frees itself.
	Until time.Time
}

// Left is what a claim has left; -1 where the budget sets no limit.
type Left struct {
	Sessions   int `json:"sessions"`
	Seconds    int `json:"seconds"`
	Concurrent int `json:"concurrent"`
}

// Refusal is a request a budget does not allow.
type Refusal struct {
	Budget string
	Key    string
	// What says which limit is reached.
	What string
	// RetryAfter is when the window resets or the earliest open session's time ends.
	RetryAfter time.Duration
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("budget %q: %s; try again in %s", r.Budget, r.What, r.RetryAfter.Round(time.Second))
}

// ErrStore wraps a store that could not answer (Redis unreachable or slow).
var ErrStore = errors.New("budget store unavailable")

// MinSeconds is the least a session may be granted: a minutes budget with less left refuses.
const MinSeconds = 60

// Memory is a Store for one process. Counters live as long as their window, open sessions as
// long as their reserved time.
type Memory struct {
	mu sync.Mutex
	// used holds sessions and seconds spent per claim id (budget, key, window).
	used map[string]*usage
	// open holds, per budget and key, when each open session's reserved time ends, in order,
	// so that the ended ones are a prefix to drop.
	open map[string][]time.Time
	// swept is when expired entries were last dropped.
	swept time.Time
}

type usage struct {
	sessions, seconds int
	reset             time.Time
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{used: make(map[string]*usage), open: make(map[string][]time.Time)}
}

var _ Store = (*Memory)(nil)

// Reserve implements Store.
func (m *Memory) Reserve(_ context.Context, now time.Time, claims []Claim, seconds int) (Reservation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	grant := seconds
	for _, c := range claims {
		b := c.Budget
		u := m.used[c.id()]
		if b.Sessions > 0 && u != nil && u.sessions >= b.Sessions {
			return Reservation{}, &Refusal{Budget: b.Name, Key: c.Key, What: fmt.Sprintf("%d sessions per %s used", b.Sessions, b.Window), RetryAfter: c.Reset.Sub(now)}
		}
		if b.Minutes > 0 {
			left := b.Minutes * 60
			if u != nil {
				left -= u.seconds
			}
			if left < MinSeconds {
				return Reservation{}, &Refusal{Budget: b.Name, Key: c.Key, What: fmt.Sprintf("%d minutes per %s used", b.Minutes, b.Window), RetryAfter: c.Reset.Sub(now)}
			}
			grant = min(grant, left)
		}
		if b.Concurrent > 0 {
			open := live(m.open[c.openID()], now)
			m.open[c.openID()] = open
			if len(open) >= b.Concurrent {
				return Reservation{}, &Refusal{Budget: b.Name, Key: c.Key, What: fmt.Sprintf("%d sessions open at once", b.Concurrent), RetryAfter: earliest(open).Sub(now)}
			}
		}
	}
	until := now.Add(time.Duration(grant) * time.Second)
	for _, c := range claims {
		b := c.Budget
		if b.Sessions > 0 || b.Minutes > 0 {
			u := m.used[c.id()]
			if u == nil {
				u = &usage{reset: c.Reset}
				m.used[c.id()] = u
			}
			u.sessions++
			u.seconds += grant
		}
		if b.Concurrent > 0 {
			open := m.open[c.openID()]
			i, _ := slices.BinarySearchFunc(open, until, time.Time.Compare)
			m.open[c.openID()] = slices.Insert(open, i, until)
		}
	}
	return Reservation{Claims: claims, Seconds: grant, Until: until}, nil
}

// Release implements Store.
func (m *Memory) Release(_ context.Context, r Reservation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range r.Claims {
		if u := m.used[c.id()]; u != nil {
			u.sessions = max(u.sessions-1, 0)
			u.seconds = max(u.seconds-r.Seconds, 0)
		}
		open := m.open[c.openID()]
		if i, found := slices.BinarySearchFunc(open, r.Until, time.Time.Compare); found {
			m.open[c.openID()] = slices.Delete(open, i, i+1)
		}
	}
	return nil
}

// Remaining implements Store.
func (m *Memory) Remaining(_ context.Context, now time.Time, claims []Claim) ([]Left, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Left, len(claims))
	for i, c := range claims {
		b := c.Budget
		u := m.used[c.id()]
		if u == nil {
			u = &usage{}
		}
		l := Left{Sessions: -1, Seconds: -1, Concurrent: -1}
		if b.Sessions > 0 {
			l.Sessions = max(b.Sessions-u.sessions, 0)
		}
		if b.Minutes > 0 {
			l.Seconds = max(b.Minutes*60-u.seconds, 0)
		}
		if b.Concurrent > 0 {
			open := live(m.open[c.openID()], now) // filters in place: store what is left
			m.open[c.openID()] = open
			l.Concurrent = max(b.Concurrent-len(open), 0)
		}
		out[i] = l
	}
	return out, nil
}

// sweep drops counters whose window has ended and open sessions whose time is up, at most
// every ten seconds, so memory follows the active keys without a request paying for a walk of
// them all.
func (m *Memory) sweep(now time.Time) {
	if now.Sub(m.swept) < 10*time.Second {
		return
	}
	m.swept = now
	for id, u := range m.used {
		if !now.Before(u.reset) {
			delete(m.used, id)
		}
	}
	for id, open := range m.open {
		if open = live(open, now); len(open) == 0 {
			delete(m.open, id)
		} else {
			m.open[id] = open
		}
	}
}

// live drops, from open sessions in order of their end, those whose reserved time has ended
// at now: a prefix.
func live(open []time.Time, now time.Time) []time.Time {
	i, _ := slices.BinarySearchFunc(open, now, func(t, now time.Time) int {
		if t.After(now) {
			return 1
		}
		return -1
	})
	return open[i:]
}

// earliest is when the first of the open sessions ends.
func earliest(open []time.Time) time.Time { return open[0] }

// RetryAfterSeconds is a refusal's Retry-After header value: whole seconds, at least 1.
func (r *Refusal) RetryAfterSeconds() int {
	return max(int(math.Ceil(r.RetryAfter.Seconds())), 1)
}
