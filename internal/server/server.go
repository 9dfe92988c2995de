// Package server is the HTTP service: the token endpoint frontends call, the operations
// endpoints, and the admin API.
package server

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/trace"

	"github.com/persona-router/persona-router/internal/anam"
	"github.com/persona-router/persona-router/internal/budget"
	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/identity"
	"github.com/persona-router/persona-router/internal/ratelimit"
	"github.com/persona-router/persona-router/internal/reload"
	"github.com/persona-router/persona-router/internal/telemetry"
)

// Configs gives the configuration snapshot in force. A request takes one snapshot and uses
// only that one from start to finish.
type Configs interface {
	Current() *config.Snapshot
}

// Reloader reloads the configuration on demand and tells how the last reload went.
type Reloader interface {
	Reload(ctx context.Context, trigger string) (reload.Status, error)
	LastReload() reload.Status
}

// Minter obtains session tokens from Anam.
type Minter interface {
	CreateSessionToken(ctx context.Context, body anam.Body) (string, error)
}

var _ Minter = (*anam.Client)(nil)

// Options are a Server's dependencies and settings.
type Options struct {
	Logger  *slog.Logger
	Configs Configs
	// Reloader serves the admin API's reload and config endpoints.
	Reloader Reloader
	// ReloadTimeout is the reloader's deadline (reload.DefaultTimeout when zero).
	ReloadTimeout time.Duration
	Anam          Minter
	Metrics       *Metrics
	// Identity tells who is asking for a token; nil is anonymous.
	Identity identity.Identifier
	// RateLimit limits token requests per user (or client address), in this process or
	// shared through Redis; nil is no limit.
	RateLimit ratelimit.Limit
	// TrustedProxies are the CIDRs whose X-Forwarded-For gives the client's address.
	TrustedProxies []string
	// AdminToken enables the admin API when not empty.
	AdminToken string
	// CORSOrigins are the origins allowed to call the token endpoint from a browser.
	CORSOrigins []string
	// Budgets counts what sessions spend of the configuration's budgets; nil is a store in
	// memory.
	Budgets budget.Store
	// DefaultSessionSeconds is what a session reserves of a minutes budget when its persona
	// sets no maxSessionLengthSeconds (600 when zero).
	DefaultSessionSeconds int
	// StoreState names the store of budgets and limits for /admin/config: "memory" or "redis".
	StoreState string
	// DenyOnStoreError answers 503 store_unavailable when the store cannot answer in time;
	// otherwise the request goes ahead unbudgeted and unlimited, and a warning is logged.
	DenyOnStoreError bool
	// TracerProvider traces every request (telemetry.Setup); nil installs no tracing at all.
	TracerProvider trace.TracerProvider
	// StoreCheck asks the store of budgets and limits whether it answers (a Redis PING within
	// the store's deadline); nil when the store is in memory. With DenyOnStoreError, /readyz
	// calls it and answers not ready while it fails.
	StoreCheck func(ctx context.Context) error
}

// Server answers the service's HTTP requests.
type Server struct {
	engine   *gin.Engine
	log      *slog.Logger
	configs  Configs
	reloader Reloader
	// reloadTimeout is the reloader's deadline, which bounds the admin API's wait for it.
	reloadTimeout time.Duration
	identity      identity.Identifier
	limiter       ratelimit.Limit
	anam          Minter
	metrics       *Metrics
	adminToken    string
	corsOrigins   []string
	budgets       budget.Store
	storeState    string
	denyOnStore   bool
	storeCheck    func(ctx context.Context) error
	// draining is set when the service begins to shut down: /readyz answers not ready from
	// then on, so that load balancers stop sending before the listener closes.
	draining atomic.Bool
	// throttle, when the rate limit and the budgets both live in Redis, is the rate limit the
	// token handler takes in the budgets' script; nil otherwise.
	throttle rateSpec
	// storeFailing tells /admin/config whether the last call to the store failed.
	storeFailing atomic.Bool
	// sessionSeconds is what a session without maxSessionLengthSeconds reserves.
	sessionSeconds int
	// storeWarned limits the log's store warnings to one a second.
	storeWarned atomic.Int64
	// tracing tells the request log to report the request's trace.
	tracing bool
	// inlineGroups tells that the log's handler is one of log/slog's own, which write a
	// record before Handle returns and inline a group without a key.
	inlineGroups bool
}

// throttledReserver is a budget store that takes a caller's rate limit in the same step as
// its budgets (budget.Redis).
type throttledReserver interface {
	ReserveThrottled(ctx context.Context, now time.Time, claims []budget.Claim, seconds int, t *budget.Throttle) (budget.Reservation, error)
}

// rateSpec is a shared rate limit that such a store can take (ratelimit.Redis).
type rateSpec interface {
	Rate() (interval time.Duration, burst int)
}

// DefaultSessionSeconds is what a session reserves of a minutes budget when its persona sets
// no maxSessionLengthSeconds.
const DefaultSessionSeconds = 600

func init() {
	// Release mode: no debug lines at start-up, whoever builds a Server.
	gin.SetMode(gin.ReleaseMode)
}

// New builds a Server. It fails only on an invalid trusted-proxy CIDR.
func New(opts Options) (*Server, error) {
	s := &Server{
		engine:         gin.New(),
		log:            opts.Logger,
		configs:        opts.Configs,
		reloader:       opts.Reloader,
		reloadTimeout:  cmp.Or(opts.ReloadTimeout, reload.DefaultTimeout),
		identity:       opts.Identity,
		limiter:        opts.RateLimit,
		anam:           opts.Anam,
		metrics:        opts.Metrics,
		adminToken:     opts.AdminToken,
		corsOrigins:    opts.CORSOrigins,
		budgets:        opts.Budgets,
		storeState:     cmp.Or(opts.StoreState, "memory"),
		denyOnStore:    opts.DenyOnStoreError,
		storeCheck:     opts.StoreCheck,
		sessionSeconds: cmp.Or(opts.DefaultSessionSeconds, DefaultSessionSeconds),
	}
	if s.log != nil {
		switch s.log.Handler().(type) {
		case *slog.JSONHandler, *slog.TextHandler:
			s.inlineGroups = true
		}
	}
	if s.budgets == nil {
		s.budgets = budget.NewMemory()
	}
	if _, ok := s.budgets.(throttledReserver); ok {
		if rs, ok := opts.RateLimit.(rateSpec); ok {
			s.throttle = rs
		}
	}
	s.engine.HandleMethodNotAllowed = true
	s.engine.ContextWithFallback = true
	if s.identity == nil {
		s.identity = identity.Anonymous{}
	}
	// gin trusts every proxy by default: only the configured ones may set the client address.
	if err := s.engine.SetTrustedProxies(opts.TrustedProxies); err != nil {
		return nil, fmt.Errorf("trusted proxies: %w", err)
	}
	// Tracing comes first, so that the request's log line can carry its trace id.
	if opts.TracerProvider != nil {
		s.tracing = true
		s.engine.Use(telemetry.Middleware(opts.TracerProvider)...)
	}
	s.engine.Use(s.observe())
	s.routes()
	return s, nil
}

// Drain makes /readyz answer 503 not_ready from now on: the service is shutting down. Every
// other endpoint goes on serving as before.
func (s *Server) Drain() { s.draining.Store(true) }

// ServeHTTP makes the Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.engine.ServeHTTP(w, r)
}

// HTTPServer wraps h in an http.Server with production timeouts. An answer may take as long as
// the Anam call (anamTimeout) and then some, never longer. What net/http itself reports (failed
// accepts, TLS handshake errors, handler mistakes) goes to log as warnings, like every other
// line of the service, instead of to the standard library's logger.
func HTTPServer(addr string, h http.Handler, anamTimeout time.Duration, log *slog.Logger) *http.Server {
	return &http.Server{
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      anamTimeout + 30*time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}
