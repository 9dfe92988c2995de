// Package telemetrytest receives what the service exports over OTLP, for tests.
package telemetrytest

import (
	"encoding/hex"
	"io"
	"net/http"
	"sync"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Collector is an OTLP/HTTP trace receiver (protobuf, uncompressed, at /v1/traces) that keeps
// every span it is sent. Serve it with httptest.NewServer and point
// OTEL_EXPORTER_OTLP_ENDPOINT at it, with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf.
type Collector struct {
	mu    sync.Mutex
	spans []Span
}

// Span is a span as the collector received it.
type Span struct {
	Name    string
	Kind    tracepb.Span_SpanKind
	TraceID string
	// Resource holds the string attributes of the span's resource (service.name, …).
	Resource map[string]string
}

var _ http.Handler = (*Collector)(nil)

func (c *Collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	if err != nil || r.URL.Path != "/v1/traces" || r.Method != http.MethodPost {
		http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
		return
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		resource := map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			resource[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, Span{Name: s.GetName(), Kind: s.GetKind(), TraceID: hex.EncodeToString(s.GetTraceId()), Resource: resource})
			}
		}
	}
	c.mu.Unlock()
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// Spans returns the spans received so far.
func (c *Collector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Span(nil), c.spans...)
}
