package telemetry

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"

	"github.com/persona-router/persona-router/internal/telemetry/telemetrytest"
)

func TestEnabled(t *testing.T) {
	const endpoint = "http://collector:4318"
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing set", nil, false},
		{"OTLP endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, true},
		{"OTLP traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint + "/v1/traces"}, true},
		{"exporter otlp", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{"exporter console", map[string]string{"OTEL_TRACES_EXPORTER": "console"}, true},
		{"exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none"}, false},
		{"exporter none beats an endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "None", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, false},
		{"SDK disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, false},
		{"SDK disabled, any case", map[string]string{"OTEL_SDK_DISABLED": " TRUE ", "OTEL_TRACES_EXPORTER": "otlp"}, false},
		{"SDK not disabled", map[string]string{"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, true},
		{"blank endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, false},
		{"service name alone", map[string]string{"OTEL_SERVICE_NAME": "router"}, false},
		{"metrics exporter alone", map[string]string{"OTEL_METRICS_EXPORTER": "otlp"}, false},
		{"metrics endpoint alone", map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": endpoint}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Enabled(func(k string) string { return tc.env[k] }); got != tc.want {
				t.Errorf("Enabled(%v) = %v, want %v", tc.env, got, tc.want)
			}
		})
	}
}

func TestSetupOffBuildsNothing(t *testing.T) {
	// The process environment would turn tracing on; getenv, which says nothing, decides.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	tp, shutdown, err := Setup(t.Context(), func(string) string { return "" }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if tp != nil {
		t.Errorf("tracing off, yet Setup returned a provider %T", tp)
	}
	if err := shutdown(t.Context()); err != nil {
		t.Errorf("shutdown with tracing off: %v", err)
	}
}

// TestSetupExportsOverOTLPAndFlushesOnShutdown runs the exporter the standard variables
// configure against a collector on a loopback port. The batch delay is an hour, so a span
// reaches the collector only because shutdown flushes it.
func TestSetupExportsOverOTLPAndFlushesOnShutdown(t *testing.T) {
	for _, tc := range []struct {
		name      string
		env       map[string]string
		wantName  string
		wantAttrs map[string]string
	}{
		{name: "default service name", wantName: "persona-router"},
		{name: "OTEL_SERVICE_NAME", env: map[string]string{"OTEL_SERVICE_NAME": "router-eu"}, wantName: "router-eu"},
		{name: "OTEL_RESOURCE_ATTRIBUTES", env: map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=router-us,deployment.environment.name=staging"},
			wantName: "router-us", wantAttrs: map[string]string{"deployment.environment.name": "staging"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &telemetrytest.Collector{}
			ts := httptest.NewServer(c)
			defer ts.Close()
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ts.URL)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
			t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "3600000")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			tp, shutdown, err := Setup(t.Context(), os.Getenv, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if tp == nil {
				t.Fatal("tracing on, yet Setup returned no provider")
			}
			_, span := tp.Tracer("test").Start(t.Context(), "probe")
			span.End()
			if err := shutdown(t.Context()); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			spans := c.Spans()
			if len(spans) != 1 || spans[0].Name != "probe" {
				t.Fatalf("collector received spans %v, want one named probe", spans)
			}
			if got, ok := spans[0].Resource["service.name"]; !ok || got != tc.wantName {
				t.Errorf("service.name %q (present: %v), want %q", got, ok, tc.wantName)
			}
			for k, want := range tc.wantAttrs {
				if got, ok := spans[0].Resource[k]; !ok || got != want {
					t.Errorf("resource %s = %q (present: %v), want %q", k, got, ok, want)
				}
			}
		})
	}
}

func TestSetupRejectsABadEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name, key, value, want string
	}{
		{"unknown exporter", "OTEL_TRACES_EXPORTER", "carrier-pigeon", "creating the trace exporter"},
		{"malformed resource attributes", "OTEL_RESOURCE_ATTRIBUTES", "service.name", "reading the trace resource"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
			t.Setenv(tc.key, tc.value)
			tp, _, err := Setup(t.Context(), os.Getenv, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Setup error %v, want one saying %q", err, tc.want)
			}
			if tp != nil {
				t.Errorf("Setup failed, yet returned a provider")
			}
		})
	}
}

// TestExportFailuresAreLogged: a collector that refuses the spans is reported in the service's
// log, as a warning, instead of on the standard library's logger.
func TestExportFailuresAreLogged(t *testing.T) {
	prev := otel.GetErrorHandler()
	t.Cleanup(func() { otel.SetErrorHandler(prev) })
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusBadRequest)
	}))
	defer refusing.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", refusing.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	var logs bytes.Buffer
	tp, shutdown, err := Setup(t.Context(), os.Getenv, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("test").Start(t.Context(), "probe")
	span.End()
	_ = shutdown(t.Context())
	var line map[string]any
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("no JSON log line for the failed export: %q", logs.String())
	}
	if level, ok := line["level"]; !ok || level != "WARN" {
		t.Errorf("level %v (present: %v), want WARN: %v", level, ok, line)
	}
	if msg, ok := line["error"].(string); !ok || !strings.Contains(msg, "400") {
		t.Errorf("error %q, want the collector's refusal: %v", msg, line)
	}
}
