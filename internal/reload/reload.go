// Package reload keeps the configuration in force current: it reloads on file changes
// (fsnotify, or polling where file systems give no events), on SIGHUP and on request, one
// reload at a time, and swaps a new snapshot in only when it is complete and valid.
package reload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/source"
)

// Triggers name what asked for a reload.
const (
	TriggerStartup = "startup"
	TriggerWatch   = "watch"
	TriggerPoll    = "poll"
	TriggerSignal  = "sighup"
	TriggerAdmin   = "admin"
)

// Status is the outcome of the last reload attempt.
type Status struct {
	At time.Time `json:"at"`
	OK bool      `json:"ok"`
	// Errors lists every problem of a rejected configuration, as path:line:col: message.
	Errors   []string `json:"errors"`
	Duration Duration `json:"durationMs"`
	Trigger  string   `json:"trigger"`
	// Version is the version of the configuration read, applied or not.
	Version string `json:"version,omitempty"`
}

// Duration marshals as whole and fractional milliseconds.
type Duration time.Duration

// MarshalJSON writes the duration in milliseconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(formatMillis(time.Duration(d))), nil
}

// request asks the reload loop for a reload. A forced one always runs the loader; otherwise
// the loader runs only when the files' content differs from the last attempt's.
type request struct {
	trigger string
	force   bool
	reply   chan Status
}

// DefaultTimeout is how long a reload may take (--reload-timeout) before it is rejected.
const DefaultTimeout = 10 * time.Second

// Manager holds the configuration in force and reloads it.
type Manager struct {
	dirs    config.Dirs
	timeout time.Duration
	log     *slog.Logger
	metrics *Metrics
	// builds counts the builds still running, abandoned past their deadline included: Run
	// waits for them before it returns.
	builds sync.WaitGroup

	current atomic.Pointer[config.Snapshot]
	last    atomic.Pointer[Status]
	// attempted is the content version of the last attempt, or its read error: a change
	// notification whose content equals it is a no-op.
	attempted string

	requests chan request
	// stopped is closed when Run returns, so that nobody waits for a loop that is gone.
	stopped chan struct{}
}

// New loads the configuration; an invalid one is an error, and nothing is served. Every load
// and reload must finish within timeout.
func New(dirs config.Dirs, timeout time.Duration, log *slog.Logger, metrics *Metrics) (*Manager, error) {
	m := &Manager{dirs: dirs, timeout: timeout, log: log, metrics: metrics, requests: make(chan request), stopped: make(chan struct{})}
	if _, err := m.reload(TriggerStartup, true); err != nil {
		return nil, err
	}
	return m, nil
}

// Current returns the snapshot in force; it is never nil once New succeeded.
func (m *Manager) Current() *config.Snapshot { return m.current.Load() }

// LastReload returns the outcome of the last reload attempt.
func (m *Manager) LastReload() Status { return *m.last.Load() }

// Run serializes every reload until ctx ends. Reload, the watcher and the poller all go
// through it.
func (m *Manager) Run(ctx context.Context) {
	defer close(m.stopped)
	defer m.builds.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-m.requests:
			st, _ := m.reload(req.trigger, req.force)
			m.metrics.handled(req.trigger)
			if req.reply != nil {
				req.reply <- st
			}
		}
	}
}

// ErrStopped is returned by Reload once Run has returned.
var ErrStopped = errors.New("the reload loop has stopped")

// Reload runs the loader now, even when no file changed, and returns the outcome. It waits
// for Run to take the request; ctx bounds the wait.
func (m *Manager) Reload(ctx context.Context, trigger string) (Status, error) {
	reply := make(chan Status, 1)
	select {
	case m.requests <- request{trigger: trigger, force: true, reply: reply}:
	case <-ctx.Done():
		return Status{}, ctx.Err()
	case <-m.stopped:
		return Status{}, ErrStopped
	}
	select {
	case st := <-reply:
		return st, nil
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
}

// notify asks for a hash-confirmed reload without waiting for it.
func (m *Manager) notify(ctx context.Context, trigger string) {
	select {
	case m.requests <- request{trigger: trigger}:
	case <-ctx.Done():
	case <-m.stopped:
	}
}

// reload reads the files and, when forced or when they changed, builds and swaps in a new
// snapshot; the error is the rejected configuration's. It runs on Run's goroutine only (and in
// New, before Run starts).
func (m *Manager) reload(trigger string, force bool) (Status, error) {
	start := time.Now()
	files, err := config.Read(m.dirs)
	key := ""
	if err != nil {
		key = "error: " + err.Error()
	} else {
		key = files.Version
	}
	if !force && key == m.attempted {
		return m.LastReload(), nil
	}
	m.attempted = key
	var snap *config.Snapshot
	if err == nil {
		snap, err = m.build(files)
	}
	st := Status{At: start, OK: err == nil, Errors: []string{}, Duration: Duration(time.Since(start)), Trigger: trigger}
	if files != nil {
		st.Version = files.Version
	}
	attrs := []any{"trigger", trigger, "version", st.Version, "duration_ms", float64(time.Since(start).Microseconds()) / 1000}
	if err != nil {
		st.Errors = source.AsErrors(err).Strings()
		running := ""
		if cur := m.Current(); cur != nil {
			running = cur.Version
		}
		m.log.Error("configuration reload rejected; the last good configuration keeps serving",
			append(attrs, "result", "failure", "serving_version", running, "errors", st.Errors)...)
	} else {
		m.current.Store(snap)
		m.log.Info("configuration reloaded",
			append(attrs, "result", "success", "personas", len(snap.PersonaIDs()), "rules", len(snap.Rules()), "tests", snap.Tests())...)
	}
	m.last.Store(&st)
	m.metrics.record(st, m.Current())
	return st, err
}

// build builds the snapshot within the reload deadline. Past it, the candidate is rejected
// and the loop goes on: the build, told to stop, ends at its next check (between two rule
// tests), and Run waits for it before returning.
func (m *Manager) build(files *config.Files) (*config.Snapshot, error) {
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	type result struct {
		snap *config.Snapshot
		err  error
	}
	done := make(chan result, 1)
	m.builds.Add(1)
	go func() {
		defer m.builds.Done()
		snap, err := files.Build(ctx)
		done <- result{snap, err}
	}()
	select {
	case r := <-done:
		if r.err != nil && ctx.Err() != nil {
			return nil, m.tooLong()
		}
		return r.snap, r.err
	case <-ctx.Done():
		return nil, m.tooLong()
	}
}

func (m *Manager) tooLong() error {
	return fmt.Errorf("reload took longer than %s (--reload-timeout); look for rule tests or expressions that do too much work", m.timeout)
}

func formatMillis(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', -1, 64)
}
