// Package telemetry sets up OpenTelemetry tracing from the standard OTEL_* environment
// variables, and instruments the service's HTTP server and its Anam client with it.
//
// Tracing is off unless the environment asks for it, and when it is off nothing here is
// installed: no middleware runs and no transport is wrapped, so an untraced service pays
// nothing for the feature.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ServiceName is service.name when neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES
// names the service.
const ServiceName = "persona-router"

// Enabled tells whether the environment asks for traces: OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_TRACES_EXPORTER is set, OTEL_TRACES_EXPORTER is
// not "none", and OTEL_SDK_DISABLED is not "true".
func Enabled(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	switch exporter := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); {
	case strings.EqualFold(exporter, "none"):
		return false
	case exporter != "":
		return true
	}
	return strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")) != "" ||
		strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) != ""
}

// Setup builds the service's TracerProvider when Enabled(getenv), and returns nil and a
// shutdown that does nothing otherwise. getenv decides whether tracing is on; the exporter,
// sampler, batching and resource are then configured by the OpenTelemetry SDK from the
// process environment, as every OpenTelemetry SDK is (OTEL_EXPORTER_OTLP_*,
// OTEL_TRACES_SAMPLER, OTEL_BSP_*, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES).
//
// shutdown flushes the spans not yet exported and stops the exporter; the service calls it
// once, when it stops, with a context that bounds the wait. Failed exports (a collector that
// is down) are logged to log as warnings: OpenTelemetry reports them through its process-wide
// error handler, which Setup points at log.
func Setup(ctx context.Context, getenv func(string) string, log *slog.Logger) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	if !Enabled(getenv) {
		return nil, func(context.Context) error { return nil }, nil
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("OpenTelemetry: spans may be lost", "error", err.Error())
	}))
	exporter, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the trace exporter: %w", err)
	}
	// The service's name comes first, so that the environment's attributes override it.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(ServiceName)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		// A malformed OTEL_RESOURCE_ATTRIBUTES is an operator's mistake: say so at start-up
		// rather than export spans that cannot be told apart.
		return nil, nil, errors.Join(fmt.Errorf("reading the trace resource: %w", err), exporter.Shutdown(ctx))
	}
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	return sdk, sdk.Shutdown, nil
}
