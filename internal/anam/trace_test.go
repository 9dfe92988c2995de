package anam

import (
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func TestWithTracerProviderWrapsOnlyWhenTracing(t *testing.T) {
	base := &http.Client{Timeout: 7 * time.Second}
	if c := NewClient("http://anam", "key", base, time.Second, WithTracerProvider(nil)); c.HTTP != base {
		t.Errorf("no provider, yet the HTTP client was replaced")
	}
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	c := NewClient("http://anam", "key", base, time.Second, WithTracerProvider(tp))
	if c.HTTP == base {
		t.Fatal("with a provider, the HTTP client is not traced")
	}
	if _, ok := c.HTTP.Transport.(*otelhttp.Transport); !ok {
		t.Errorf("traced transport is %T, want *otelhttp.Transport", c.HTTP.Transport)
	}
	if c.HTTP.Timeout != base.Timeout {
		t.Errorf("traced client's timeout %v, want the base client's %v", c.HTTP.Timeout, base.Timeout)
	}
	if base.Transport != nil {
		t.Errorf("the caller's HTTP client was changed: transport %T", base.Transport)
	}
}
