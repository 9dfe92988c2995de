package reload

import (
	"context"
	"io"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/persona-router/persona-router/internal/config/configtest"
)

// TestOnSignalReloadsAndCountsRequests sends the process SIGHUP: the loop runs the loader even
// though no file changed. A watch request on unchanged files is handled (counted) without a
// reload.
func TestOnSignalReloadsAndCountsRequests(t *testing.T) {
	metrics := NewMetrics(prometheus.NewRegistry())
	m, err := New(configtest.Large{Rules: 2, Contexts: 1, Personas: 2}.Write(t), DefaultTimeout, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	loops := make(chan struct{}, 2)
	go func() { m.Run(ctx); loops <- struct{}{} }()
	onSignal := m.OnSignal(syscall.SIGHUP)
	go func() { onSignal(ctx); loops <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-loops; <-loops })

	requests := func(trigger string) float64 { return testutil.ToFloat64(metrics.requests.WithLabelValues(trigger)) }
	reloads := func() float64 { return testutil.ToFloat64(metrics.reloads.WithLabelValues("success")) }
	before := reloads()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for requests(TriggerSignal) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP was never handled")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := reloads(); got != before+1 || m.LastReload().Trigger != TriggerSignal {
		t.Errorf("after SIGHUP: %v successful reloads (want %v), last trigger %q", got, before+1, m.LastReload().Trigger)
	}

	m.notify(ctx, TriggerWatch)
	// notify returns once the loop took the request; a forced reload after it is answered only
	// when the loop is done with the watch request.
	if _, err := m.Reload(ctx, TriggerAdmin); err != nil {
		t.Fatal(err)
	}
	if got := requests(TriggerWatch); got != 1 {
		t.Errorf("watch requests handled = %v, want 1", got)
	}
	if got := reloads(); got != before+2 {
		t.Errorf("%v successful reloads, want %v: the unchanged watch request must not run the loader", got, before+2)
	}
}
