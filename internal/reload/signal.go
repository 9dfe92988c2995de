package reload

import (
	"context"
	"os"
	"os/signal"
)

// OnSignal subscribes to sigs (SIGHUP in production) at once, so that none sent from now on is
// missed, and returns the loop that reloads on each of them until ctx ends. Such a reload always
// runs the loader, even when no file changed. The caller runs the loop, and waits for it; the
// subscription ends when the loop returns.
func (m *Manager) OnSignal(sigs ...os.Signal) func(ctx context.Context) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	return func(ctx context.Context) {
		defer signal.Stop(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				_, _ = m.Reload(ctx, TriggerSignal)
			}
		}
	}
}
