package server

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/persona-router/persona-router/internal/anam"
	"github.com/persona-router/persona-router/internal/identity"
)

// Metrics are the service's Prometheus metrics, on a registry of its own so that tests can
// build as many servers as they like.
type Metrics struct {
	Registry     *prometheus.Registry
	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	decisions    *prometheus.CounterVec
	anamRequests *prometheus.CounterVec
	anamDuration prometheus.Histogram
	rateLimited  prometheus.Counter
	authFailures *prometheus.CounterVec
	// budgetRefusals and budgetReservations count, by budget, the requests a budget refused
	// and the sessions it reserved; storeErrors the calls to the budget store that failed.
	budgetRefusals     *prometheus.CounterVec
	budgetReservations *prometheus.CounterVec
	storeErrors        prometheus.Counter

	// The series a successful token request touches, resolved once per label set rather than
	// looked up by label values on every request.
	anamSuccess  prometheus.Counter
	httpSeries   sync.Map // httpKey → *httpChildren
	decisionsBy  sync.Map // [2]string{persona, rule} → prometheus.Counter
	reservations sync.Map // budget name → prometheus.Counter
}

// httpKey is the label set of the HTTP metrics.
type httpKey struct {
	route  string
	status int
}

// httpChildren are the HTTP metrics' series of one route and status.
type httpChildren struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// observeHTTP counts an answered request and its duration.
func (m *Metrics) observeHTTP(route string, status int, elapsed time.Duration) {
	key := httpKey{route, status}
	v, ok := m.httpSeries.Load(key)
	if !ok {
		v, _ = m.httpSeries.LoadOrStore(key, &httpChildren{
			requests: m.httpRequests.WithLabelValues(route, strconv.Itoa(status)),
			duration: m.httpDuration.WithLabelValues(route),
		})
	}
	ch := v.(*httpChildren)
	ch.requests.Inc()
	ch.duration.Observe(elapsed.Seconds())
}

// decided counts a routing decision.
func (m *Metrics) decided(persona, rule string) {
	counter(&m.decisionsBy, [2]string{persona, rule}, func() prometheus.Counter {
		return m.decisions.WithLabelValues(persona, rule)
	}).Inc()
}

// reserved counts a session reserved against a budget.
func (m *Metrics) reserved(budget string) {
	counter(&m.reservations, budget, func() prometheus.Counter {
		return m.budgetReservations.WithLabelValues(budget)
	}).Inc()
}

// counter returns the series cached under key, resolving it with resolve the first time.
func counter[K comparable](cache *sync.Map, key K, resolve func() prometheus.Counter) prometheus.Counter {
	if v, ok := cache.Load(key); ok {
		return v.(prometheus.Counter)
	}
	v, _ := cache.LoadOrStore(key, resolve())
	return v.(prometheus.Counter)
}

// NewMetrics registers the service's metrics, with the Go runtime and process collectors, on
// a new registry.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "persona_router_http_requests_total",
			Help: "HTTP requests answered, by route and status code.",
		}, []string{"route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "persona_router_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "persona_router_decisions_total",
			Help: `Routing decisions, by persona and rule (rule="" when no rule matched and the default persona served).`,
		}, []string{"persona", "rule"}),
		anamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "persona_router_anam_requests_total",
			Help: "Session-token calls to Anam, by outcome (success, auth_failed, rejected, rate_limited, unavailable, timeout).",
		}, []string{"outcome"}),
		anamDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "persona_router_anam_request_duration_seconds",
			Help:    "Time of a session-token call to Anam, retries included.",
			Buckets: []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
	}
	m.rateLimited = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "persona_router_rate_limited_total",
		Help: "Token requests refused by the rate limit.",
	})
	m.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "persona_router_auth_failures_total",
		Help: "Token requests refused for a missing or invalid identity, by reason.",
	}, []string{"reason"})
	for _, r := range identity.Reasons {
		m.authFailures.WithLabelValues(r)
	}
	m.budgetRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "persona_router_budget_refusals_total",
		Help: "Token requests refused because a budget was used up, by budget.",
	}, []string{"budget"})
	m.budgetReservations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "persona_router_budget_reservations_total",
		Help: "Sessions reserved against a budget, by budget.",
	}, []string{"budget"})
	m.storeErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "persona_router_store_errors_total",
		Help: "Calls to the budget and rate-limit store that failed or timed out.",
	})
	reg.MustRegister(m.budgetRefusals, m.budgetReservations, m.storeErrors)
	reg.MustRegister(m.httpRequests, m.httpDuration, m.decisions, m.anamRequests, m.anamDuration, m.rateLimited, m.authFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Series that dashboards and alerts expect exist from the start, at zero.
	m.anamSuccess = m.anamRequests.WithLabelValues("success")
	for _, k := range anam.Kinds {
		m.anamRequests.WithLabelValues(k.String())
	}
	return m
}
