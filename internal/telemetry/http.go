package telemetry

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Attributes the service sets on a request's server span, from what its log line reports.
const (
	RequestID     = attribute.Key("persona_router.request_id")
	Context       = attribute.Key("persona_router.context")
	Persona       = attribute.Key("persona_router.persona")
	Rule          = attribute.Key("persona_router.rule")
	Overlays      = attribute.Key("persona_router.overlays")
	ConfigVersion = attribute.Key("persona_router.config_version")
	ErrorCode     = attribute.Key("persona_router.error_code")
)

// traceContext is the only propagation the service does: W3C Trace Context (traceparent,
// tracestate). Baggage is neither read nor passed on, so no caller's data rides along to Anam.
var traceContext = propagation.TraceContext{}

// untraced are the routes that get no span: probes and scrapes, every few seconds, would
// bury the requests worth looking at.
var untraced = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// Middleware returns the gin middleware that traces each request with tp: a server span named
// after the method and route ("POST /api/session-token"), with the semantic-convention HTTP
// attributes. Install it before the middleware that logs the request, so that the log line
// can carry the trace id.
//
// A caller's traceparent is not trusted as the span's parent: the token endpoint is called by
// browsers, which may send any trace id and sampling flag they like. The server span starts a
// trace of its own and links to the caller's span, so a traced frontend can still be followed
// into this service.
func Middleware(tp trace.TracerProvider) []gin.HandlerFunc {
	traced := otelgin.Middleware(ServiceName,
		otelgin.WithTracerProvider(tp),
		otelgin.WithMeterProvider(noop.NewMeterProvider()),
		otelgin.WithPropagators(linkedCaller{}),
		otelgin.WithGinFilter(func(c *gin.Context) bool { return !untraced[c.FullPath()] }),
	)
	return []gin.HandlerFunc{traced, linkCaller}
}

// callerKey holds, in a request's context, the span context the caller sent.
type callerKey struct{}

// linkedCaller is the server's propagator: it reads the caller's traceparent without making
// it the parent of the server span, and keeps it for linkCaller.
type linkedCaller struct{}

func (linkedCaller) Inject(context.Context, propagation.TextMapCarrier) {}

func (linkedCaller) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	caller := trace.SpanContextFromContext(traceContext.Extract(context.Background(), carrier))
	if !caller.IsValid() {
		return ctx
	}
	return context.WithValue(ctx, callerKey{}, caller)
}

func (linkedCaller) Fields() []string { return traceContext.Fields() }

// linkCaller links the request's server span to the span its caller sent.
func linkCaller(c *gin.Context) {
	ctx := c.Request.Context()
	if caller, ok := ctx.Value(callerKey{}).(trace.SpanContext); ok {
		trace.SpanFromContext(ctx).AddLink(trace.Link{SpanContext: caller})
	}
	c.Next()
}

// Client returns a copy of base (http.DefaultClient when nil) whose requests are traced with
// tp: a client span per request, named after the method and path, and a traceparent header
// that continues the request's trace.
func Client(tp trace.TracerProvider, base *http.Client) *http.Client {
	if base == nil {
		base = http.DefaultClient
	}
	traced := *base
	traced.Transport = otelhttp.NewTransport(base.Transport,
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithMeterProvider(noop.NewMeterProvider()),
		otelhttp.WithPropagators(traceContext),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }),
	)
	return &traced
}

// TraceID returns the id of the trace that ctx's span belongs to, "" when there is none.
func TraceID(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}
