// Package service is persona-router's lifecycle: it loads the configuration, wires the
// HTTP server to Anam, the identity, the rate limit and the budget store, listens, keeps the
// configuration current, and shuts down in order — draining, finishing in-flight requests, and
// waiting for every goroutine it started.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/persona-router/persona-router/internal/anam"
	"github.com/persona-router/persona-router/internal/budget"
	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/identity"
	"github.com/persona-router/persona-router/internal/ratelimit"
	"github.com/persona-router/persona-router/internal/reload"
	"github.com/persona-router/persona-router/internal/sandbox"
	"github.com/persona-router/persona-router/internal/server"
	"github.com/persona-router/persona-router/internal/source"
)

// Auth is who may ask for tokens.
type Auth string

// The identity modes of --auth.
const (
	AuthNone   Auth = "none"
	AuthJWT    Auth = "jwt"
	AuthHeader Auth = "header"
)

// Options is what the service runs with, every value already parsed and checked: the command
// line (or a test) builds it once.
type Options struct {
	// Logger receives every line the service writes.
	Logger *slog.Logger
	// Addr is the TCP address to listen on; port 0 picks a free port (see Service.Addr).
	Addr string
	// AddrFile, when set, receives the address listened on once the service is ready, written
	// atomically; it is removed when the service stops.
	AddrFile string
	Dirs     config.Dirs
	// Sandbox mints tokens from a fake Anam in this process instead of calling AnamURL.
	Sandbox     bool
	AnamURL     string
	AnamTimeout time.Duration
	APIKey      string
	// AdminToken enables the admin API when not empty.
	AdminToken  string
	CORSOrigins []string
	// Watch reloads on file events; PollInterval, when positive, also checks the files that
	// often. SIGHUP always reloads.
	Watch         bool
	PollInterval  time.Duration
	ReloadTimeout time.Duration

	Auth Auth
	// JWT verifies tokens with AuthJWT.
	JWT identity.JWTOptions
	// UserHeader and EmailHeader name the user with AuthHeader.
	UserHeader, EmailHeader string
	// RateLimit is the limit per caller, nil for none; RateBurst 0 is its count.
	RateLimit      *ratelimit.Spec
	RateBurst      int
	TrustedProxies []netip.Prefix

	// RedisURL, when set, shares budgets and the rate limit through Redis; RedisPrefix
	// namespaces its keys.
	RedisURL, RedisPassword, RedisPrefix string
	// RedisTimeout bounds one call to Redis on a request's path (budget.DefaultTimeout when 0).
	RedisTimeout time.Duration
	// DenyOnStoreError refuses requests (503 store_unavailable) when the store cannot answer,
	// and makes the service unready meanwhile; otherwise they go ahead unbudgeted.
	DenyOnStoreError bool
	// SessionSeconds is what a session without maxSessionLengthSeconds reserves of a minutes
	// budget.
	SessionSeconds int

	// ShutdownDelay is how long the service keeps serving, unready, once asked to stop, so that
	// load balancers stop sending before the listener closes.
	ShutdownDelay time.Duration
	// ShutdownGrace is how long in-flight requests may take to finish once the listener is
	// closed; those still running then are answered 503 shutting_down.
	ShutdownGrace time.Duration

	// TracerProvider traces every request and every call to Anam (telemetry.Setup); nil
	// installs no tracing at all. Its owner flushes it after the service has stopped.
	TracerProvider trace.TracerProvider
}

// ShutdownDrain is how long requests cut short at the end of the shutdown grace have to write
// their 503 before their connections are closed.
const ShutdownDrain = 5 * time.Second

// ErrConfigRejected is returned by New when the configuration is invalid; every error has
// been logged.
var ErrConfigRejected = errors.New("configuration rejected")

// Service is persona-router, built and ready to start.
type Service struct {
	opts    Options
	log     *slog.Logger
	configs *reload.Manager
	// server is built by Start, with the identity; serverOpts holds the rest of its
	// dependencies, built by New.
	server     *server.Server
	serverOpts server.Options
	http       *http.Server
	rdb        *redis.Client

	ln net.Listener
	// group runs every goroutine the service starts; Wait returns when all have returned.
	group *errgroup.Group
	// stopNow ends the shutdown delay at once (Close).
	stopNow   chan struct{}
	closeOnce sync.Once
	waitOnce  sync.Once
	waitErr   error
}

// New loads the configuration and builds the service; nothing runs and nothing listens until
// Start. An invalid configuration is logged, error by error, and New returns ErrConfigRejected.
func New(opts Options) (*Service, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{opts: opts, log: log, stopNow: make(chan struct{})}
	metrics := server.NewMetrics()
	configs, err := reload.New(opts.Dirs, opts.ReloadTimeout, log, reload.NewMetrics(metrics.Registry))
	if err != nil {
		errs := source.AsErrors(err)
		for _, e := range errs {
			log.Error("configuration error", "error", e.Error())
		}
		log.Error("configuration rejected: not starting", "errors", len(errs), "rules", opts.Dirs.Rules, "personas", opts.Dirs.Personas)
		return nil, fmt.Errorf("%w: %w", ErrConfigRejected, err)
	}
	s.configs = configs

	var client *anam.Client
	if opts.Sandbox {
		log.Warn("SANDBOX MODE: session tokens come from an in-process fake Anam and are not real; never use this in production")
		client = sandbox.NewClient(opts.AnamTimeout, anam.WithTracerProvider(opts.TracerProvider))
	} else {
		client = anam.NewClient(opts.AnamURL, opts.APIKey, anam.NewHTTPClient(opts.AnamTimeout), opts.AnamTimeout, anam.WithTracerProvider(opts.TracerProvider))
	}

	var limiter ratelimit.Limit
	var store budget.Store
	var storeCheck func(context.Context) error
	storeState := "memory"
	if opts.RedisURL != "" {
		rdb, err := budget.DialRedis(opts.RedisURL, opts.RedisPassword)
		if err != nil {
			return nil, err
		}
		s.rdb = rdb
		redis.SetLogger(quietRedisLog{log})
		timeout := opts.RedisTimeout
		if timeout <= 0 {
			timeout = budget.DefaultTimeout
		}
		rs := budget.NewRedis(rdb, opts.RedisPrefix)
		rs.Timeout = timeout
		store = rs
		storeState = "redis"
		storeCheck = func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			return rdb.Ping(ctx).Err()
		}
		if opts.RateLimit != nil {
			rl, err := ratelimit.NewRedis(rdb, opts.RedisPrefix, *opts.RateLimit, opts.RateBurst)
			if err != nil {
				rdb.Close()
				return nil, err
			}
			rl.Timeout = timeout
			limiter = rl
		}
	} else if opts.RateLimit != nil {
		l, err := ratelimit.New(*opts.RateLimit, opts.RateBurst, ratelimit.DefaultMaxKeys)
		if err != nil {
			return nil, err
		}
		limiter = l
	}
	proxies := make([]string, len(opts.TrustedProxies))
	for i, p := range opts.TrustedProxies {
		proxies[i] = p.String()
	}
	s.serverOpts = server.Options{
		Logger:                log,
		Configs:               configs,
		Reloader:              configs,
		ReloadTimeout:         opts.ReloadTimeout,
		Anam:                  client,
		Metrics:               metrics,
		AdminToken:            opts.AdminToken,
		CORSOrigins:           opts.CORSOrigins,
		DefaultSessionSeconds: opts.SessionSeconds,
		Budgets:               store,
		StoreState:            storeState,
		DenyOnStoreError:      opts.DenyOnStoreError,
		StoreCheck:            storeCheck,
		RateLimit:             limiter,
		TrustedProxies:        proxies,
		TracerProvider:        opts.TracerProvider,
	}
	return s, nil
}

// Start listens, writes the address file, and starts the service's goroutines: serving, the
// reload loop, the watcher, the poller and SIGHUP. It returns once the service is ready to
// serve. When ctx ends, the service shuts down (see Wait); Close does so at once.
func (s *Service) Start(ctx context.Context) error {
	// The background context outlives ctx: reloads and the JWKS go on while in-flight requests
	// finish, and end only when serving has.
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	fail := func(err error) error {
		cancel()
		s.closeRedis()
		return err
	}
	ident, err := newIdentity(bg, s.opts, s.log)
	if err != nil {
		return fail(err)
	}
	opts := s.serverOpts
	opts.Identity = ident
	if s.server, err = server.New(opts); err != nil {
		return fail(err)
	}

	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fail(fmt.Errorf("listening on %s: %w", s.opts.Addr, err))
	}
	if s.opts.AddrFile != "" {
		if err := writeAddrFile(s.opts.AddrFile, ln.Addr().String()); err != nil {
			ln.Close()
			return fail(err)
		}
	}
	s.ln = ln
	s.http = server.HTTPServer(s.opts.Addr, s.server, s.opts.AnamTimeout, s.log)
	// Every request's context derives from requests, so that the requests still running when
	// the shutdown grace is over can be cut short.
	requests, cutShort := context.WithCancelCause(context.Background())
	s.http.BaseContext = func(net.Listener) context.Context { return requests }

	// Subscribed now, before Start returns: SIGHUP's default action would end the process.
	onSignal := s.configs.OnSignal(syscall.SIGHUP)
	g, gctx := errgroup.WithContext(bg)
	s.group = g
	g.Go(func() error { s.configs.Run(gctx); return nil })
	g.Go(func() error { onSignal(gctx); return nil })
	if s.opts.Watch {
		g.Go(func() error {
			if err := s.configs.Watch(gctx); err != nil {
				s.log.Error("file watching stopped; edits go live only through SIGHUP, /admin/reload or --poll-interval", "error", err.Error())
			}
			return nil
		})
	}
	if s.opts.PollInterval > 0 {
		g.Go(func() error { s.configs.Poll(gctx, s.opts.PollInterval); return nil })
	}
	g.Go(func() error {
		if err := s.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving: %w", err)
		}
		return nil
	})
	// The stopper waits for ctx (or Close, or serving failing), then shuts down in order and
	// ends the background context, which stops every other goroutine of the group.
	g.Go(func() error {
		defer cancel()
		defer cutShort(nil)
		select {
		case <-ctx.Done():
			s.drain(gctx)
		case <-s.stopNow:
			s.server.Drain()
		case <-gctx.Done():
			// Serving failed: nothing to drain.
		}
		return s.shutdown(cutShort)
	})

	snap := s.configs.Current()
	s.log.Info("listening", "addr", ln.Addr().String(), "config_version", snap.Version,
		"personas", len(snap.PersonaIDs()), "rules", len(snap.Rules()), "sandbox", s.opts.Sandbox,
		"admin_api", s.opts.AdminToken != "", "anam_url", s.anamURL(), "watch", s.opts.Watch, "poll_interval", s.opts.PollInterval.String(),
		"auth", string(s.opts.Auth), "rate_limit", s.rateLimit(), "tracing", s.opts.TracerProvider != nil)
	return nil
}

func (s *Service) anamURL() string {
	if s.opts.Sandbox {
		return "in-process fake"
	}
	return s.opts.AnamURL
}

func (s *Service) rateLimit() string {
	if s.opts.RateLimit == nil {
		return ""
	}
	return s.opts.RateLimit.String()
}

// Addr is the address the service listens on; nil before Start.
func (s *Service) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// drain makes the service unready and keeps serving for the shutdown delay, so that load
// balancers stop sending before the listener closes. Close or a failure ends it early.
func (s *Service) drain(failed context.Context) {
	s.server.Drain()
	if s.opts.ShutdownDelay <= 0 {
		return
	}
	s.log.Info("shutting down: unready, still serving while load balancers stop sending", "delay", s.opts.ShutdownDelay.String())
	t := time.NewTimer(s.opts.ShutdownDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.stopNow:
	case <-failed.Done():
	}
}

// shutdown stops accepting connections at once and gives in-flight requests the grace to
// finish. The requests still running then are cut short through cutShort — their Anam calls
// end, and they answer 503 shutting_down — and have ShutdownDrain to write that answer before
// their connections are closed. Requests that outlive the grace are expected (a slow Anam), so
// they are no error: the service still exits 0.
func (s *Service) shutdown(cutShort context.CancelCauseFunc) error {
	grace := s.opts.ShutdownGrace
	s.log.Info("shutting down: finishing in-flight requests", "grace", grace.String())
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		if err != nil {
			return fmt.Errorf("shutting down: %w", err)
		}
		return nil
	}
	s.log.Warn("shutdown grace is over: requests still running are answered 503 shutting_down", "grace", grace.String())
	cutShort(server.ErrShuttingDown)
	ctx, cancel = context.WithTimeout(context.Background(), ShutdownDrain)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		s.log.Warn("closing the connections still open after the shutdown grace", "drain", ShutdownDrain.String(), "error", err.Error())
		// Close fails only on closing listeners, which the first Shutdown already closed.
		_ = s.http.Close()
	}
	return nil
}

// Wait blocks until the service has stopped — its context ended, Close was called, or serving
// failed — and every goroutine it started has returned; then it closes the Redis client and
// removes the address file. It returns why serving failed, or nil after a shutdown.
func (s *Service) Wait() error {
	s.waitOnce.Do(func() {
		if s.group == nil {
			s.waitErr = errors.New("the service was not started")
			return
		}
		err := s.group.Wait()
		s.closeRedis()
		if s.opts.AddrFile != "" {
			if rmErr := os.Remove(s.opts.AddrFile); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
				s.log.Warn("removing the address file", "path", s.opts.AddrFile, "error", rmErr.Error())
			}
		}
		s.log.Info("stopped")
		s.waitErr = err
	})
	return s.waitErr
}

// Close shuts the service down now, without the shutdown delay, and waits as Wait does.
func (s *Service) Close() error {
	s.closeOnce.Do(func() { close(s.stopNow) })
	if s.group == nil {
		s.closeRedis()
		return nil
	}
	return s.Wait()
}

// Run starts the service and blocks until ctx ends and the service has stopped.
func Run(ctx context.Context, opts Options) error {
	s, err := New(opts)
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	return s.Wait()
}

func (s *Service) closeRedis() {
	if s.rdb != nil {
		_ = s.rdb.Close()
	}
}

// writeAddrFile writes addr to path through a temporary file renamed over it, so that a reader
// never sees it half-written.
func writeAddrFile(path, addr string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing the address file: %w", err)
	}
	_, err = tmp.WriteString(addr + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing the address file: %w", err)
	}
	return nil
}

// newIdentity builds the identity of the --auth mode; ctx ends the JWKS refresh.
func newIdentity(ctx context.Context, opts Options, log *slog.Logger) (identity.Identifier, error) {
	switch opts.Auth {
	case AuthJWT:
		jwt := opts.JWT
		jwt.OnRefreshError = func(err error) {
			log.Error("fetching the JWKS failed; tokens signed with its keys fail until it succeeds", "url", jwt.JWKSURL, "error", err.Error())
		}
		return identity.NewJWT(ctx, jwt)
	case AuthHeader:
		log.Warn("identity comes from request headers: only safe behind an authenticating proxy that sets them on every request",
			"user_header", opts.UserHeader, "email_header", opts.EmailHeader)
		return identity.Header{UserHeader: opts.UserHeader, EmailHeader: opts.EmailHeader}, nil
	}
	return identity.Anonymous{}, nil
}

// quietRedisLog passes go-redis's own messages (a failed dial, printed on every attempt while
// Redis is down) to the service's log, at most one a second.
type quietRedisLog struct{ log *slog.Logger }

var redisLogged atomic.Int64

func (q quietRedisLog) Printf(_ context.Context, format string, v ...any) {
	now := time.Now().Unix()
	if last := redisLogged.Load(); last != now && redisLogged.CompareAndSwap(last, now) {
		q.log.Warn("redis: " + fmt.Sprintf(format, v...))
	}
}
