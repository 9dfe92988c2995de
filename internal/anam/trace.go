package anam

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/persona-router/persona-router/internal/telemetry"
)

// Option changes a Client that NewClient builds.
type Option func(*Client)

// WithTracerProvider traces the client's calls with tp: each request to Anam (each attempt)
// is a client span, child of the span in the call's context, and carries a W3C traceparent;
// each retry is an "anam.retry" event on the call's span. A nil tp leaves the client as it is:
// its transport is not wrapped.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *Client) {
		if tp != nil {
			c.HTTP = telemetry.Client(tp, c.HTTP)
		}
	}
}

// traceRetry records on the span in ctx (the request's server span) that attempt failed with
// err and the call retries after wait.
func traceRetry(ctx context.Context, err *Error, attempt int, wait time.Duration) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{
		attribute.Int("anam.attempt", attempt),
		attribute.String("error.type", err.Kind.String()),
		attribute.Int64("anam.backoff_ms", wait.Milliseconds()),
	}
	if err.Status != 0 {
		attrs = append(attrs, attribute.Int("http.response.status_code", err.Status))
	}
	span.AddEvent("anam.retry", trace.WithAttributes(attrs...))
}
