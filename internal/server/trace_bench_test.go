//go:build unix

package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/persona-router/persona-router/internal/anam"
	"github.com/persona-router/persona-router/internal/sandbox"
	"github.com/persona-router/persona-router/internal/telemetry"
)

// discard is a span exporter that drops what it is given: the benchmark measures the service's
// side of tracing, not a collector.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkTokenTracing serves token requests in process (an in-process fake Anam, JSON logs
// to io.Discard) with tracing wired in four ways:
//   - no-wiring: Options and the Anam client built without any tracing field or option;
//   - off: what the service builds when the environment asks for no traces — telemetry.Setup's
//     nil provider passed to server.Options and anam.WithTracerProvider;
//   - on: every request sampled, spans batched to an exporter that drops them;
//   - on-unsampled: tracing installed but the sampler records nothing (the cost of the
//     middleware and propagation alone).
//
// cpu-ns/op is the process's CPU time per request, steadier than ns/op on a shared machine.
// Interleave the modes across runs to compare them, e.g.
// go test -c -o /tmp/server.test ./internal/server && for i in 1 2 3 4 5 6; do
// /tmp/server.test -test.run '^$' -test.bench TokenTracing -test.benchmem -test.count 1; done
func BenchmarkTokenTracing(b *testing.B) {
	snap := traceSnapshot(b)
	off, _, err := telemetry.Setup(b.Context(), func(string) string { return "" }, slog.New(slog.DiscardHandler))
	if err != nil || off != nil {
		b.Fatalf("Setup with no OTEL_* variables: %v, %v", off, err)
	}
	for _, tc := range []struct {
		name  string
		tp    trace.TracerProvider
		wired bool
	}{
		{name: "no-wiring"},
		{name: "off", tp: off, wired: true},
		{name: "on", tp: sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}), sdktrace.WithSampler(sdktrace.AlwaysSample())), wired: true},
		{name: "on-unsampled", tp: sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}), sdktrace.WithSampler(sdktrace.NeverSample())), wired: true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			if sdk, ok := tc.tp.(*sdktrace.TracerProvider); ok {
				b.Cleanup(func() { _ = sdk.Shutdown(context.Background()) })
			}
			fake := sandbox.InProcess(&sandbox.Fake{APIKey: "key"})
			opts := Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Configs: fixed{snap}, Metrics: NewMetrics()}
			if tc.wired {
				opts.Anam = anam.NewClient("http://anam", "key", fake, 10*time.Second, anam.WithTracerProvider(tc.tp))
				opts.TracerProvider = tc.tp
			} else {
				opts.Anam = anam.NewClient("http://anam", "key", fake, 10*time.Second)
			}
			srv, err := New(opts)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/api/session-token", strings.NewReader(`{"context": "sales"}`))
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				srv.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body.String())
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the CPU time the process has used, in nanoseconds, user and system: on a shared
// machine it measures a benchmark's work where wall time also counts the waits for a core.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
