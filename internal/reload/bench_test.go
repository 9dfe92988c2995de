package reload

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/persona-router/persona-router/internal/config/configtest"
)

func newManager(b *testing.B, lc configtest.Large) (*Manager, context.Context) {
	b.Helper()
	m, err := New(lc.Write(b), DefaultTimeout, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	go m.Run(ctx)
	return m, ctx
}

// BenchmarkReload measures a forced reload (read, parse, compile, link, run the rule tests,
// swap) of 1,000 rules, 100 personas and 1,000 rule tests.
func BenchmarkReload(b *testing.B) {
	m, ctx := newManager(b, configtest.Large{Rules: 1000, Contexts: 10, Personas: 100, Tests: 1000})
	b.ReportAllocs()
	for b.Loop() {
		st, err := m.Reload(ctx, TriggerAdmin)
		if err != nil || !st.OK {
			b.Fatal(err, st.Errors)
		}
	}
}

// BenchmarkWriteToLive measures, per edit, the time from the end of a file write to the new
// snapshot serving, through the fsnotify watcher (debounce included), and reports its
// percentiles. Run it with a fixed count: go test ./internal/reload -run '^$' -bench
// WriteToLive -benchtime 100x
func BenchmarkWriteToLive(b *testing.B) {
	m, ctx := newManager(b, configtest.Large{Rules: 10, Contexts: 4, Personas: 5})
	go func() {
		if err := m.Watch(ctx); err != nil {
			b.Error(err)
		}
	}()
	time.Sleep(50 * time.Millisecond) // let the watcher start
	path := filepath.Join(m.dirs.Personas, "default.yaml")
	var latencies []time.Duration
	b.ResetTimer()
	for i := range b.N {
		before := m.Current().Version
		if err := os.WriteFile(path, []byte(configtest.Persona(fmt.Sprintf("Edit%d", i))), 0o644); err != nil {
			b.Fatal(err)
		}
		written := time.Now()
		for m.Current().Version == before {
			if time.Since(written) > 5*time.Second {
				b.Fatalf("edit %d never went live", i)
			}
			time.Sleep(time.Millisecond)
		}
		latencies = append(latencies, time.Since(written))
	}
	b.StopTimer()
	slices.Sort(latencies)
	pct := func(p int) float64 { return float64(latencies[(len(latencies)-1)*p/100].Microseconds()) / 1000 }
	b.ReportMetric(pct(50), "p50-ms")
	b.ReportMetric(pct(99), "p99-ms")
	b.ReportMetric(pct(100), "max-ms")
}
