package reload

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/persona-router/persona-router/internal/config/configtest"
)

func TestReloadAfterTheLoopStopped(t *testing.T) {
	m, err := New(configtest.Large{Rules: 2, Contexts: 1, Personas: 2}.Write(t), DefaultTimeout, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	if st, err := m.Reload(context.Background(), TriggerAdmin); err != nil || !st.OK {
		t.Fatalf("Reload = %+v, %v", st, err)
	}
	cancel()
	<-done
	// A reload asked for during shutdown returns at once instead of waiting for a loop that
	// is gone.
	wait, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if _, err := m.Reload(wait, TriggerAdmin); !errors.Is(err, ErrStopped) {
		t.Errorf("Reload after Run returned: %v, want ErrStopped", err)
	}
}
