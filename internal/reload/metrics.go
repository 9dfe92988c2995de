package reload

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/persona-router/persona-router/internal/config"
)

// Metrics tell operators whether the last reload worked and what is serving.
type Metrics struct {
	lastOK      prometheus.Gauge
	lastSuccess prometheus.Gauge
	reloads     *prometheus.CounterVec
	requests    *prometheus.CounterVec
	info        *prometheus.GaugeVec
	rules       prometheus.Gauge
	personas    prometheus.Gauge
}

// NewMetrics registers the reload metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "persona_router_config_last_reload_successful",
			Help: "Whether the last configuration reload attempt succeeded (1) or was rejected (0).",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "persona_router_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration reload.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "persona_router_config_reloads_total",
			Help: "Configuration loads run (the one at start-up included), by result.",
		}, []string{"result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "persona_router_config_reload_requests_total",
			Help: "Reload requests the reload loop handled, by trigger (watch, poll, sighup, admin); a watch or poll request runs the loader only when the files changed.",
		}, []string{"trigger"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "persona_router_config_info",
			Help: "The configuration serving, by version; always 1.",
		}, []string{"version"}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "persona_router_rules",
			Help: "Rules in the configuration serving.",
		}),
		personas: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "persona_router_personas",
			Help: "Persona templates in the configuration serving.",
		}),
	}
	reg.MustRegister(m.lastOK, m.lastSuccess, m.reloads, m.requests, m.info, m.rules, m.personas)
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	for _, trigger := range []string{TriggerWatch, TriggerPoll, TriggerSignal, TriggerAdmin} {
		m.requests.WithLabelValues(trigger)
	}
	return m
}

// record updates the metrics after a reload attempt; serving is the snapshot in force.
func (m *Metrics) record(st Status, serving *config.Snapshot) {
	if st.OK {
		m.lastOK.Set(1)
		m.lastSuccess.Set(float64(st.At.UnixNano()) / 1e9)
		m.reloads.WithLabelValues("success").Inc()
	} else {
		m.lastOK.Set(0)
		m.reloads.WithLabelValues("failure").Inc()
	}
	if serving != nil {
		m.info.Reset()
		m.info.WithLabelValues(serving.Version).Set(1)
		m.rules.Set(float64(len(serving.Rules())))
		m.personas.Set(float64(len(serving.PersonaIDs())))
	}
}

// handled counts a reload request the loop has finished with, whether it ran the loader or
// found the files unchanged.
func (m *Metrics) handled(trigger string) {
	m.requests.WithLabelValues(trigger).Inc()
}
