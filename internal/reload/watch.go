package reload

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/persona-router/persona-router/internal/config"
)

// Debounce is how long the watcher waits after the last event of a burst before it asks for
// a reload: an editor's save or a ConfigMap update is several events.
const Debounce = 150 * time.Millisecond

// MaxWait is the longest the watcher puts off a reload after the first event of a burst.
// Without it, a configuration file rewritten more often than every Debounce (by a sync tool, a
// generator or an attacker) would put every reload off for as long as the writes went on; with
// it, a burst that lasts asks for a reload every MaxWait.
const MaxWait = time.Second

// Watch asks for a reload after every burst of file events in the configuration directories,
// until ctx ends: Debounce after the burst's last event, or MaxWait after its first, whichever
// comes first. The reload is hash-confirmed, so events that change nothing (a touch) reload
// nothing.
//
// It watches directories, not files, because editors save by renaming a temporary file over
// the original, which would drop a watch on the file. It also watches each directory's parent,
// to see the directory itself removed and created again. Only events that can change what the
// loader reads count; see counts.
func (m *Manager) Watch(ctx context.Context) error {
	w, err := watchDirs(m.log, m.dirs.Rules, m.dirs.Personas)
	if err != nil {
		return err
	}
	defer w.fs.Close()
	return w.run(ctx, w.fs.Events, w.fs.Errors, Debounce, MaxWait, func() { m.notify(ctx, TriggerWatch) })
}

// watcher turns the file events of the configuration directories into reload requests.
type watcher struct {
	fs  *fsnotify.Watcher
	log *slog.Logger
	// dirs holds the configuration directories, absolute and clean.
	dirs map[string]bool
}

// watchDirs watches dirs and their parents. A missing directory is not an error: it is
// watched once its parent sees it created.
func watchDirs(log *slog.Logger, dirs ...string) (*watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("starting file watcher: %w", err)
	}
	w := &watcher{fs: fw, log: log, dirs: map[string]bool{}}
	parents := map[string]bool{}
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			fw.Close()
			return nil, fmt.Errorf("watching %s: %w", d, err)
		}
		w.dirs[abs] = true
		parents[filepath.Dir(abs)] = true
	}
	for p := range parents {
		if err := fw.Add(p); err != nil {
			fw.Close()
			return nil, fmt.Errorf("watching %s: %w", p, err)
		}
	}
	for d := range w.dirs {
		if err := fw.Add(d); err != nil {
			log.Warn("configuration directory not watched yet", "dir", d, "error", err.Error())
		}
	}
	return w, nil
}

// run reads events and errors until ctx ends or a channel closes, and calls notify once per
// burst of events that count, as Watch describes with debounce and maxWait for Debounce and
// MaxWait. notify runs on run's goroutine: events that arrive while it blocks start the next
// burst.
func (w *watcher) run(ctx context.Context, events <-chan fsnotify.Event, errs <-chan error, debounce, maxWait time.Duration, notify func()) error {
	b := burst{debounce: debounce, maxWait: maxWait}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	// event starts or extends the burst; an event past the burst's ceiling ends it at once.
	event := func() {
		if wait := b.event(time.Now()); wait > 0 {
			timer.Reset(wait)
			return
		}
		timer.Stop()
		b.end()
		notify()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err, ok := <-errs:
			if !ok {
				return nil
			}
			// An overflow loses events; a reload catches up with whatever they were.
			w.log.Warn("file watcher error; reloading to catch up", "error", err.Error())
			event()
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			name := filepath.Clean(ev.Name)
			if w.dirs[name] && ev.Has(fsnotify.Create) {
				// A configuration directory created anew is watched anew.
				if err := w.fs.Add(name); err != nil {
					w.log.Warn("configuration directory not watched", "dir", name, "error", err.Error())
				}
			}
			if w.counts(name) {
				event()
			}
		case <-timer.C:
			b.end()
			notify()
		}
	}
}

// counts tells whether an event on name can change what the loader reads. Events on the
// configuration directories themselves count (seen from their parents' watch), and inside them
// events on loaded names (config.IsConfigFile) and on Kubernetes' ConfigMap names: an update
// shows only as events on `..data`, `..data_tmp` and timestamped `..2026_…` directories, which
// all begin with "..". Editors' leftovers (.x.yaml.swp, x.yaml~, vim's 4913, emacs' .#x.yaml)
// and other files (notes.txt) do not count, so that writing them can neither cause nor put off
// a reload.
func (w *watcher) counts(name string) bool {
	if w.dirs[name] {
		return true
	}
	if !w.dirs[filepath.Dir(name)] {
		return false // a sibling in a parent directory
	}
	base := filepath.Base(name)
	return config.IsConfigFile(base) || strings.HasPrefix(base, "..")
}

// burst is the debounce of one burst of events, apart from any clock: a reload is due debounce
// after the burst's last event, but no later than maxWait after its first.
type burst struct {
	debounce, maxWait time.Duration
	// first is when the burst's first event came; zero between bursts.
	first time.Time
}

// event records an event at now and returns how long from now the reload is due; zero or less
// means at once.
func (b *burst) event(now time.Time) time.Duration {
	if b.first.IsZero() {
		b.first = now
	}
	return min(b.debounce, b.first.Add(b.maxWait).Sub(now))
}

// end ends the burst: the next event starts a new one.
func (b *burst) end() { b.first = time.Time{} }

// Poll asks for a hash-confirmed reload every interval until ctx ends, for file systems that
// give no events (NFS, SMB, FUSE, some container mounts).
func (m *Manager) Poll(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.notify(ctx, TriggerPoll)
		}
	}
}
