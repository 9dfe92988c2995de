package reload

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/config/configtest"
)

// Test-sized timings: short enough for quick tests, long enough that writes 20–50 ms apart
// make one burst even on a loaded machine.
const (
	testDebounce = 100 * time.Millisecond
	testMaxWait  = 300 * time.Millisecond
)

// watched is a watcher running on two configuration directories, with its reload requests
// sent to requests instead of a reload loop.
type watched struct {
	requests chan struct{}
	// errs, when not nil, replaces fsnotify's error channel.
	errs chan error
}

// newDirs writes a valid configuration in a temporary directory.
func newDirs(t *testing.T) config.Dirs {
	t.Helper()
	return configtest.Large{Rules: 2, Contexts: 1, Personas: 2}.Write(t)
}

// startWatch watches dirs with test-sized timings until the test ends. It returns once the
// directories are watched, so that the test's next write is seen.
func startWatch(t *testing.T, dirs config.Dirs, fakeErrors bool) *watched {
	t.Helper()
	w, err := watchDirs(slog.New(slog.NewTextHandler(io.Discard, nil)), dirs.Rules, dirs.Personas)
	if err != nil {
		t.Fatal(err)
	}
	wd := &watched{requests: make(chan struct{}, 1000)}
	errs := w.fs.Errors
	if fakeErrors {
		wd.errs = make(chan error)
		errs = wd.errs
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.run(ctx, w.fs.Events, errs, testDebounce, testMaxWait, func() { wd.requests <- struct{}{} }); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		w.fs.Close()
	})
	return wd
}

// next waits for the next reload request, failing the test after a generous timeout.
func (wd *watched) next(t *testing.T, what string) {
	t.Helper()
	select {
	case <-wd.requests:
	case <-time.After(5 * time.Second):
		t.Fatalf("no reload request after %s", what)
	}
}

// none fails the test if a reload request is pending.
func (wd *watched) none(t *testing.T, what string) {
	t.Helper()
	select {
	case <-wd.requests:
		t.Fatalf("a reload request after %s", what)
	default:
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// stream calls write every period, in its own goroutine, until the returned function is called;
// that function, which may be called again, waits for the goroutine and returns how many times
// write ran.
func stream(t *testing.T, period time.Duration, write func(i int) error) (stop func() int) {
	t.Helper()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	n := 0
	wg.Go(func() {
		for {
			if err := write(n); err != nil {
				t.Error(err)
				return
			}
			n++
			select {
			case <-quit:
				return
			case <-time.After(period):
			}
		}
	})
	return sync.OnceValue(func() int {
		close(quit)
		wg.Wait()
		return n
	})
}

// TestWatchIgnoresNamesTheLoaderIgnores writes files the loader never reads, continuously:
// they must cause no reload, and must not put off the reload a real edit asks for.
func TestWatchIgnoresNamesTheLoaderIgnores(t *testing.T) {
	t.Parallel()
	dirs := newDirs(t)
	wd := startWatch(t, dirs, false)
	ignored := []string{"notes.txt", ".default.yaml.swp", "default.yaml~", ".#default.yaml", "routes.yaml.bak", ".hidden.yaml"}
	var rounds atomic.Int64
	stop := stream(t, 20*time.Millisecond, func(i int) error {
		for _, dir := range []string{dirs.Rules, dirs.Personas} {
			for _, name := range ignored {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(fmt.Sprintf("write %d\n", i)), 0o644); err != nil {
					return err
				}
			}
			// vim checks that it may write to a directory by creating and deleting 4913.
			if err := os.WriteFile(filepath.Join(dir, "4913"), nil, 0o644); err != nil {
				return err
			}
			if err := os.Remove(filepath.Join(dir, "4913")); err != nil {
				return err
			}
		}
		rounds.Add(1)
		return nil
	})
	defer stop()

	// Many rounds over many times the ceiling: a watcher that counted these events would have
	// asked by now.
	start := time.Now()
	for rounds.Load() < 30 || time.Since(start) < 4*testMaxWait {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("only %d rounds of writes in %v", rounds.Load(), time.Since(start))
		}
		time.Sleep(10 * time.Millisecond)
	}
	wd.none(t, "writing only files the loader ignores")

	// A real edit while the ignored writes go on is asked for at once, not put off until they
	// stop.
	writeFile(t, filepath.Join(dirs.Personas, "default.yaml"), configtest.Persona("Edited"))
	wd.next(t, "a real edit among ignored writes")
}

// TestWatchAsksDuringEndlessWrites writes a configuration file every 20–50 ms, a burst that
// never goes quiet for the debounce (150 ms): reloads must still be asked for while it lasts,
// one every ceiling, and once more after it. The writes go on until three requests came, so a
// slow machine takes longer rather than failing; a watcher without a ceiling asks for none
// while the writes come faster than the debounce, and fails after 30 s.
func TestWatchAsksDuringEndlessWrites(t *testing.T) {
	t.Parallel()
	dirs := newDirs(t)
	wd := startWatch(t, dirs, false)
	path := filepath.Join(dirs.Personas, "default.yaml")
	stop := stream(t, 20*time.Millisecond, func(i int) error {
		// Vary the pause between 20 and 50 ms.
		time.Sleep(time.Duration(i%4) * 10 * time.Millisecond)
		return os.WriteFile(path, []byte(configtest.Persona(fmt.Sprintf("Write %d", i))), 0o644)
	})
	const want = 3
	start := time.Now()
	during := 0
	for during < want {
		select {
		case <-wd.requests:
			during++
		case <-time.After(30 * time.Second):
			writes := stop()
			t.Fatalf("%d reload requests in %v of writes every 20–50 ms (%d writes); want %d, one every %v",
				during, time.Since(start).Round(time.Millisecond), writes, want, testMaxWait)
		}
	}
	writes := stop()
	t.Logf("%d reload requests in %v of writes (%d writes)", during, time.Since(start).Round(time.Millisecond), writes)
	// The burst's last write is asked for too. (The stream may have stopped just before a
	// request, so the last write is made here, after it.)
	writeFile(t, path, configtest.Persona("Last write"))
	wd.next(t, "the end of the writes")
}

// TestWatchConfigMapSwap updates a directory the way Kubernetes updates a ConfigMap volume:
// every event is on a hidden name, and the visible file, a symlink, never changes itself.
func TestWatchConfigMapSwap(t *testing.T) {
	t.Parallel()
	dirs := newDirs(t)
	mount := filepath.Join(filepath.Dir(dirs.Personas), "cm")
	version := func(n int, name string) {
		dir := filepath.Join(mount, fmt.Sprintf("..2026_11_26_%02d", n))
		must(t, os.MkdirAll(dir, 0o755))
		writeFile(t, filepath.Join(dir, "default.yaml"), configtest.Persona(name))
	}
	version(1, "One")
	must(t, os.Symlink("..2026_11_26_01", filepath.Join(mount, "..data")))
	must(t, os.Symlink("..data/default.yaml", filepath.Join(mount, "default.yaml")))
	dirs.Personas = mount
	wd := startWatch(t, dirs, false)

	version(2, "Two")
	must(t, os.Symlink("..2026_11_26_02", filepath.Join(mount, "..data_tmp")))
	must(t, os.Rename(filepath.Join(mount, "..data_tmp"), filepath.Join(mount, "..data")))
	must(t, os.RemoveAll(filepath.Join(mount, "..2026_11_26_01")))
	wd.next(t, "a ConfigMap swap")
}

// TestWatchDirectoryRecreated removes a configuration directory and creates it again: both
// count, and the new directory is watched.
func TestWatchDirectoryRecreated(t *testing.T) {
	t.Parallel()
	dirs := newDirs(t)
	wd := startWatch(t, dirs, false)
	must(t, os.RemoveAll(dirs.Personas))
	wd.next(t, "removing the directory")
	must(t, os.Mkdir(dirs.Personas, 0o755))
	wd.next(t, "creating the directory again")
	writeFile(t, filepath.Join(dirs.Personas, "default.yaml"), configtest.Persona("Reborn"))
	wd.next(t, "writing into the new directory")
}

// TestWatchErrorCatchesUp checks that a watcher error (an overflow loses events) asks for a
// reload.
func TestWatchErrorCatchesUp(t *testing.T) {
	t.Parallel()
	wd := startWatch(t, newDirs(t), true)
	wd.errs <- fsnotify.ErrEventOverflow
	wd.next(t, "a watcher error")
}

// TestWatchWithProductionTimings runs Manager.Watch itself, with the production timings,
// and reads its requests where the reload loop would: while a rules file is rewritten every
// 50 ms, reloads are still asked for, one MaxWait after another.
func TestWatchWithProductionTimings(t *testing.T) {
	t.Parallel()
	m := &Manager{dirs: newDirs(t), log: slog.New(slog.NewTextHandler(io.Discard, nil)), requests: make(chan request), stopped: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		if err := m.Watch(ctx); err != nil {
			t.Error(err)
		}
	})
	path := filepath.Join(m.dirs.Rules, "notes.yaml")
	stop := stream(t, 50*time.Millisecond, func(i int) error {
		return os.WriteFile(path, []byte(fmt.Sprintf("# write %d\n", i)), 0o644)
	})
	defer stop()
	// The writes go on for several ceilings, so a watcher that starts late still sees a burst
	// longer than MaxWait; a watcher without a ceiling asks for nothing while they go on.
	const length = 4 * MaxWait
	select {
	case req := <-m.requests:
		if req.trigger != TriggerWatch || req.force {
			t.Errorf("request = %+v, want a hash-confirmed %q", req, TriggerWatch)
		}
	case <-time.After(length):
		t.Fatalf("no reload request during %v of writes every 50 ms", length)
	}
}

// TestBurst checks the debounce arithmetic on a fake clock, with the production timings.
func TestBurst(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	every := func(period, until time.Duration) []time.Duration {
		var ts []time.Duration
		for at := time.Duration(0); at <= until; at += period {
			ts = append(ts, at)
		}
		return ts
	}
	for _, tc := range []struct {
		name   string
		events []time.Duration
		want   []time.Duration
	}{
		{"one event", []time.Duration{0}, []time.Duration{ms(150)}},
		{"a short burst", []time.Duration{0, ms(10), ms(100)}, []time.Duration{ms(250)}},
		{"two bursts", []time.Duration{0, ms(400)}, []time.Duration{ms(150), ms(550)}},
		{"an event after the due time starts a new burst", []time.Duration{0, ms(150)}, []time.Duration{ms(150), ms(300)}},
		// Every 140 ms never goes quiet for 150 ms: the ceiling ends the first burst at 1 s,
		// the next starts at 1,120 ms, and the last event is 1,400 ms.
		{"the ceiling", every(ms(140), ms(1400)), []time.Duration{ms(1000), ms(1550)}},
		// Every 20 ms for 3 s: a reload every second, and one after the last event. An event
		// falls on each due time and is counted after it.
		{"an endless stream", every(ms(20), ms(3000)), []time.Duration{ms(1000), ms(2000), ms(3000), ms(3150)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := simulate(burst{debounce: Debounce, maxWait: MaxWait}, tc.events)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("reloads at %v, want %v", got, tc.want)
			}
		})
	}
}

// simulate feeds b events at the given times from a start, the way run does, and returns when
// it would ask for reloads. An event at the due time comes after the request.
func simulate(b burst, events []time.Duration) []time.Duration {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var fires []time.Duration
	var due time.Duration
	pending := false
	for _, at := range events {
		if pending && due <= at {
			fires = append(fires, due)
			b.end()
			pending = false
		}
		wait := b.event(start.Add(at))
		if wait <= 0 {
			fires = append(fires, at)
			b.end()
			continue
		}
		due, pending = at+wait, true
	}
	if pending {
		fires = append(fires, due)
	}
	return fires
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
