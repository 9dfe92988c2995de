package server

import (
	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/persona-router/persona-router/internal/telemetry"
)

// traceRequest puts what the request's log line reports (persona, rule, configuration
// version, error code) on the request's server span, and returns the trace id for the log
// line: "" when the request is not traced.
func traceRequest(c *gin.Context, rl *requestLog) string {
	ctx := c.Request.Context()
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 7)
		attrs = append(attrs, telemetry.RequestID.String(rl.id))
		if rl.hasContext {
			attrs = append(attrs, telemetry.Context.String(rl.context))
		}
		if rl.decided {
			attrs = append(attrs, telemetry.Persona.String(rl.persona), telemetry.ConfigVersion.String(rl.version))
			if rl.rule != "" {
				attrs = append(attrs, telemetry.Rule.String(rl.rule))
			}
			if len(rl.overlays) > 0 {
				attrs = append(attrs, telemetry.Overlays.StringSlice(rl.overlays))
			}
		}
		if rl.code != "" {
			attrs = append(attrs, telemetry.ErrorCode.String(rl.code))
		}
		span.SetAttributes(attrs...)
	}
	return telemetry.TraceID(ctx)
}
