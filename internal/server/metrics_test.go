package server

import (
	"testing"
	"time"
)

// value is a counter's value in what the registry gathers (what /metrics shows); -1 when the
// series does not exist.
func value(t *testing.T, m *Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, s := range f.GetMetric() {
			if len(s.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range s.GetLabel() {
				if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
					continue series
				}
			}
			if h := s.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return s.GetCounter().GetValue()
		}
	}
	return -1
}

// The cached series are the registered ones: what the request path counts is what /metrics
// shows, under the same names and labels.
func TestCachedSeriesAreTheRegisteredOnes(t *testing.T) {
	m := NewMetrics()
	for range 3 {
		m.observeHTTP("/api/session-token", 200, time.Millisecond)
	}
	m.observeHTTP("/api/session-token", 502, time.Millisecond)
	m.decided("sales", "sales-us")
	m.decided("sales", "sales-us")
	m.decided("default", "")
	m.reserved("global")
	m.anamSuccess.Inc()
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"persona_router_http_requests_total", map[string]string{"route": "/api/session-token", "code": "200"}, 3},
		{"persona_router_http_requests_total", map[string]string{"route": "/api/session-token", "code": "502"}, 1},
		{"persona_router_http_request_duration_seconds", map[string]string{"route": "/api/session-token"}, 4},
		{"persona_router_decisions_total", map[string]string{"persona": "sales", "rule": "sales-us"}, 2},
		{"persona_router_decisions_total", map[string]string{"persona": "default", "rule": ""}, 1},
		{"persona_router_budget_reservations_total", map[string]string{"budget": "global"}, 1},
		{"persona_router_anam_requests_total", map[string]string{"outcome": "success"}, 1},
		{"persona_router_anam_requests_total", map[string]string{"outcome": "timeout"}, 0},
	} {
		if got := value(t, m, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}
