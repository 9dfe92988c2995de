package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/persona-router/persona-router/internal/telemetry/telemetrytest"
)

// TestServeExportsTracesAndFlushesThemOnStop: with OTEL_EXPORTER_OTLP_ENDPOINT set, the
// service traces a token request, logs its trace id, and exports its spans when it stops —
// the batch delay is an hour, so only the shutdown flush sends them.
func TestServeExportsTracesAndFlushesThemOnStop(t *testing.T) {
	collector := httptest.NewServer(&telemetrytest.Collector{})
	defer collector.Close()
	received := collector.Config.Handler.(*telemetrytest.Collector)
	// The SDK reads the process environment; getenv decides that tracing is on.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "3600000")
	s := startService(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL},
		"--sandbox", "--rules", "../../rules", "--personas", "../../personas")
	if a := s.post(t, "/api/session-token", []byte(`{}`), "Content-Type", "application/json"); a.status != http.StatusOK {
		t.Fatalf("token request: %d %s", a.status, a.raw)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("service exited with %v", err)
	}

	var traceID string
	tracing := false
	for l := range strings.Lines(s.logs.String()) {
		var line map[string]any
		if json.Unmarshal([]byte(l), &line) != nil {
			continue
		}
		switch line["msg"] {
		case "listening":
			tracing, _ = line["tracing"].(bool)
		case "request":
			if line["route"] == "/api/session-token" {
				traceID, _ = line["trace_id"].(string)
			}
		}
	}
	if !tracing {
		t.Errorf("the listening line does not say tracing is on:\n%s", s.logs.String())
	}
	if len(traceID) != 32 {
		t.Fatalf("the token request's log line has no trace_id:\n%s", s.logs.String())
	}
	kinds := map[tracepb.Span_SpanKind]string{}
	for _, span := range received.Spans() {
		if span.TraceID != traceID {
			continue
		}
		kinds[span.Kind] = span.Name
		if name, ok := span.Resource["service.name"]; !ok || name != "persona-router" {
			t.Errorf("span %q has service.name %q (present: %v)", span.Name, name, ok)
		}
	}
	if kinds[tracepb.Span_SPAN_KIND_SERVER] != "POST /api/session-token" || kinds[tracepb.Span_SPAN_KIND_CLIENT] != "POST /v1/auth/session-token" {
		t.Errorf("spans of the logged trace by kind: %v, want the server span and the Anam call", kinds)
	}
}
