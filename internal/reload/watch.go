package reload

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Debounce is how long the watcher waits after the last event of a burst before it asks for
// a reload: an editor's save or a ConfigMap update is several events.
const Debounce = 150 * time.Millisecond

// Watch asks for a reload after every burst of file events in the configuration directories,
// until ctx ends. The reload is hash-confirmed, so events that change nothing (a touch, a
// swap file) reload nothing.
//
// It watches directories, not files, because editors save by renaming a temporary file over
// the original, which would drop a watch on the file. It also watches each directory's parent,
// to see the directory itself removed and created again. Every event in a directory counts,
// hidden names included: a Kubernetes ConfigMap update shows only as events on `..data`.
func (m *Manager) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("starting file watcher: %w", err)
	}
	defer w.Close()

	dirs := map[string]bool{}
	parents := map[string]bool{}
	for _, d := range []string{m.dirs.Rules, m.dirs.Personas} {
		abs, err := filepath.Abs(d)
		if err != nil {
			return fmt.Errorf("watching %s: %w", d, err)
		}
		dirs[abs] = true
		parents[filepath.Dir(abs)] = true
	}
	for p := range parents {
		if err := w.Add(p); err != nil {
			return fmt.Errorf("watching %s: %w", p, err)
		}
	}
	for d := range dirs {
		// A missing directory is watched again once its parent sees it created.
		if err := w.Add(d); err != nil {
			m.log.Warn("configuration directory not watched yet", "dir", d, "error", err.Error())
		}
	}

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// An overflow loses events; a reload catches up with whatever they were.
			m.log.Warn("file watcher error; reloading to catch up", "error", err.Error())
			timer.Reset(Debounce)
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			name := filepath.Clean(ev.Name)
			switch {
			case dirs[filepath.Dir(name)]:
				// A change inside a configuration directory.
			case dirs[name]:
				// The directory itself appeared (or went): watch it again.
				if ev.Has(fsnotify.Create) {
					if err := w.Add(name); err != nil {
						m.log.Warn("configuration directory not watched", "dir", name, "error", err.Error())
					}
				}
			default:
				continue // a sibling in a parent directory
			}
			timer.Reset(Debounce)
		case <-timer.C:
			m.notify(ctx, TriggerWatch)
		}
	}
}

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
