package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/persona-router/persona-router/internal/anam"
	"github.com/persona-router/persona-router/internal/budget"
	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/identity"
	"github.com/persona-router/persona-router/internal/logbuf"
	"github.com/persona-router/persona-router/internal/ratelimit"
	"github.com/persona-router/persona-router/internal/reload"
	"github.com/persona-router/persona-router/internal/server"
	"github.com/persona-router/persona-router/internal/source"
)

// shutdownDrain is how long requests cut short at the end of the shutdown grace have to write
// their 503 before their connections are closed.
const shutdownDrain = 5 * time.Second

// serveConfig is what `serve` runs with.
type serveConfig struct {
	addr        string
	dirs        config.Dirs
	anamURL     string
	anamTimeout time.Duration
	sandbox     bool
	corsOrigins []string
	logFormat   string
	watch       bool
	poll        time.Duration
	// reloadTimeout bounds every load and reload.
	reloadTimeout time.Duration
	apiKey        string
	adminToken    string

	auth           string
	jwt            identity.JWTOptions
	userHeader     string
	emailHeader    string
	rateLimit      string
	rateBurst      int
	trustedProxies []string

	// shutdownGrace is how long in-flight requests may take to finish after SIGTERM.
	shutdownGrace time.Duration
	// sessionSeconds is what a session without maxSessionLengthSeconds reserves of a
	// minutes budget.
	sessionSeconds int
	// redisURL, when set, shares budgets and the rate limit through Redis; redisPrefix
	// namespaces its keys; onStoreError is allow or deny.
	redisURL, redisPassword, redisPrefix, onStoreError string
}

// envFlags maps each flag to the environment variable that sets it when the flag is absent.
var envFlags = []struct{ flag, env string }{
	{"addr", "ADDR"},
	{"rules", "RULES_DIR"},
	{"personas", "PERSONAS_DIR"},
	{"anam-url", "ANAM_BASE_URL"},
	{"anam-timeout", "ANAM_TIMEOUT"},
	{"sandbox", "SANDBOX"},
	{"cors-origins", "CORS_ORIGINS"},
	{"log-format", "LOG_FORMAT"},
	{"watch", "WATCH"},
	{"poll-interval", "POLL_INTERVAL"},
	{"reload-timeout", "RELOAD_TIMEOUT"},
	{"auth", "AUTH_MODE"},
	{"jwt-jwks-url", "JWT_JWKS_URL"},
	{"jwt-issuer", "JWT_ISSUER"},
	{"jwt-audience", "JWT_AUDIENCE"},
	{"user-header", "USER_HEADER"},
	{"user-email-header", "USER_EMAIL_HEADER"},
	{"rate-limit", "RATE_LIMIT"},
	{"rate-burst", "RATE_BURST"},
	{"trusted-proxies", "TRUSTED_PROXIES"},
	{"shutdown-grace", "SHUTDOWN_GRACE"},
	{"default-session-seconds", "DEFAULT_SESSION_SECONDS"},
	{"redis-url", "REDIS_URL"},
	{"redis-prefix", "REDIS_PREFIX"},
	{"on-store-error", "ON_STORE_ERROR"},
}

// parseServeFlags reads flags, then the environment for every flag not given; a flag wins over
// its environment variable. Secrets come from the environment only.
func parseServeFlags(args []string, getenv func(string) string, stderr io.Writer) (cfg serveConfig, done bool, err error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&cfg.addr, "addr", ":8080", "address to listen on (env ADDR)")
	fs.StringVar(&cfg.dirs.Rules, "rules", "./rules", "directory of rule files (env RULES_DIR)")
	fs.StringVar(&cfg.dirs.Personas, "personas", "./personas", "directory of persona templates (env PERSONAS_DIR)")
	fs.StringVar(&cfg.anamURL, "anam-url", anam.DefaultBaseURL, "Anam API base URL (env ANAM_BASE_URL)")
	fs.DurationVar(&cfg.anamTimeout, "anam-timeout", 10*time.Second, "deadline of a whole Anam call, retries included (env ANAM_TIMEOUT)")
	fs.BoolVar(&cfg.sandbox, "sandbox", false, "use an in-process fake Anam: no key, no network, tokens are not real (env SANDBOX)")
	cors := fs.String("cors-origins", "", "comma-separated origins allowed to call the API from browsers (env CORS_ORIGINS)")
	fs.StringVar(&cfg.logFormat, "log-format", "json", "log format: json or text (env LOG_FORMAT)")
	fs.BoolVar(&cfg.watch, "watch", true, "reload when files in --rules or --personas change (env WATCH)")
	fs.DurationVar(&cfg.poll, "poll-interval", 0, "also check the files for changes this often, for file systems without change events; 0 is off (env POLL_INTERVAL)")
	fs.DurationVar(&cfg.reloadTimeout, "reload-timeout", reload.DefaultTimeout, "how long a load or reload may take before it is rejected and the last good configuration keeps serving (env RELOAD_TIMEOUT)")
	fs.StringVar(&cfg.auth, "auth", "none", "who may ask for tokens: none, jwt or header (env AUTH_MODE)")
	fs.StringVar(&cfg.jwt.JWKSURL, "jwt-jwks-url", "", "JWKS URL of the keys verifying RS/PS/ES/EdDSA tokens, with --auth jwt (env JWT_JWKS_URL)")
	fs.StringVar(&cfg.jwt.Issuer, "jwt-issuer", "", "required iss of tokens, with --auth jwt (env JWT_ISSUER)")
	fs.StringVar(&cfg.jwt.Audience, "jwt-audience", "", "required aud of tokens, with --auth jwt (env JWT_AUDIENCE)")
	fs.StringVar(&cfg.userHeader, "user-header", "X-Forwarded-User", "header naming the user, with --auth header (env USER_HEADER)")
	fs.StringVar(&cfg.emailHeader, "user-email-header", "X-Forwarded-Email", "header giving the user's email, with --auth header (env USER_EMAIL_HEADER)")
	fs.StringVar(&cfg.rateLimit, "rate-limit", "", "token requests allowed per user or client address, like 10/min (also /s, /h); empty is no limit (env RATE_LIMIT)")
	fs.IntVar(&cfg.rateBurst, "rate-burst", 0, "requests allowed at once; 0 is the limit's count (env RATE_BURST)")
	proxies := fs.String("trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For is believed (env TRUSTED_PROXIES)")
	fs.StringVar(&cfg.redisURL, "redis-url", "", "share budgets and the rate limit with every replica through this Redis: redis:// or rediss:// (env REDIS_URL; password from the URL or REDIS_PASSWORD)")
	fs.StringVar(&cfg.redisPrefix, "redis-prefix", budget.DefaultPrefix, "prefix of every Redis key (env REDIS_PREFIX)")
	fs.StringVar(&cfg.onStoreError, "on-store-error", "allow", "when Redis cannot answer in time: allow (the request goes ahead, a warning is logged) or deny (503 store_unavailable) (env ON_STORE_ERROR)")
	fs.IntVar(&cfg.sessionSeconds, "default-session-seconds", server.DefaultSessionSeconds, "what a session reserves of a minutes budget when its persona sets no maxSessionLengthSeconds (env DEFAULT_SESSION_SECONDS)")
	fs.DurationVar(&cfg.shutdownGrace, "shutdown-grace", 15*time.Second, "on SIGTERM, how long in-flight requests may take to finish; those still running then are answered 503 (env SHUTDOWN_GRACE)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: persona-router [serve] [flags]\n\nSecrets come from the environment only: ANAM_API_KEY, ADMIN_TOKEN, JWT_SECRET, TOOL_SIGNING_SECRET.\n\nFlags:")
		fs.PrintDefaults()
	}
	if done, err := parseFlags(fs, args, stderr); done {
		return cfg, true, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, ef := range envFlags {
		if v := getenv(ef.env); v != "" && !given[ef.flag] {
			if err := fs.Set(ef.flag, v); err != nil {
				return cfg, true, fmt.Errorf("environment variable %s=%q: %v", ef.env, v, err)
			}
		}
	}
	cfg.corsOrigins = splitList(*cors)
	cfg.trustedProxies = splitList(*proxies)
	cfg.apiKey = getenv("ANAM_API_KEY")
	cfg.adminToken = getenv("ADMIN_TOKEN")
	cfg.jwt.Secret = []byte(getenv("JWT_SECRET"))
	cfg.redisPassword = getenv("REDIS_PASSWORD")
	if err := signingSecret(&cfg.dirs, getenv, cfg.sandbox); err != nil {
		return cfg, false, err
	}
	return cfg, false, cfg.validate()
}

func (cfg *serveConfig) validate() error {
	if cfg.logFormat != "json" && cfg.logFormat != "text" {
		return fmt.Errorf("--log-format must be json or text, got %q", cfg.logFormat)
	}
	if cfg.poll < 0 {
		return fmt.Errorf("--poll-interval must not be negative, got %s", cfg.poll)
	}
	if cfg.onStoreError != "allow" && cfg.onStoreError != "deny" {
		return fmt.Errorf("--on-store-error must be allow or deny, got %q", cfg.onStoreError)
	}
	if cfg.redisURL != "" && !strings.HasPrefix(cfg.redisURL, "redis://") && !strings.HasPrefix(cfg.redisURL, "rediss://") {
		return errors.New("--redis-url must be a redis:// or rediss:// URL")
	}
	if cfg.sessionSeconds < budget.MinSeconds {
		return fmt.Errorf("--default-session-seconds must be at least %d, got %d", budget.MinSeconds, cfg.sessionSeconds)
	}
	if cfg.shutdownGrace < 0 {
		return fmt.Errorf("--shutdown-grace must not be negative, got %s", cfg.shutdownGrace)
	}
	if cfg.reloadTimeout <= 0 {
		return fmt.Errorf("--reload-timeout must be positive, got %s", cfg.reloadTimeout)
	}
	if cfg.anamTimeout <= 0 {
		return fmt.Errorf("--anam-timeout must be positive, got %s", cfg.anamTimeout)
	}
	if u, err := url.Parse(cfg.anamURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--anam-url must be an http(s) URL, got %q", cfg.anamURL)
	}
	for _, o := range cfg.corsOrigins {
		if u, err := url.Parse(o); o != "*" && (err != nil || u.Scheme == "" || u.Host == "" || u.Path != "") {
			return fmt.Errorf("--cors-origins: %q is not an origin (expected scheme://host[:port])", o)
		}
	}
	switch cfg.auth {
	case "none", "header":
	case "jwt":
		if len(cfg.jwt.Secret) == 0 && cfg.jwt.JWKSURL == "" {
			return errors.New("--auth jwt needs JWT_SECRET (HS256/384/512) or --jwt-jwks-url / JWT_JWKS_URL (RS256, ES256, EdDSA…)")
		}
		if n := len(cfg.jwt.Secret); n > 0 && n < 32 {
			return fmt.Errorf("JWT_SECRET is %d bytes; use at least 32 random bytes", n)
		}
		if u, err := url.Parse(cfg.jwt.JWKSURL); cfg.jwt.JWKSURL != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "") {
			return fmt.Errorf("--jwt-jwks-url must be an http(s) URL, got %q", cfg.jwt.JWKSURL)
		}
	default:
		return fmt.Errorf("--auth must be none, jwt or header, got %q", cfg.auth)
	}
	if cfg.rateLimit != "" {
		if _, err := ratelimit.ParseSpec(cfg.rateLimit); err != nil {
			return fmt.Errorf("--rate-limit: %w", err)
		}
	}
	if cfg.rateBurst < 0 {
		return fmt.Errorf("--rate-burst must not be negative, got %d", cfg.rateBurst)
	}
	for _, p := range cfg.trustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				return fmt.Errorf("--trusted-proxies: %q is not a CIDR or an IP address", p)
			}
		}
	}
	if !cfg.sandbox && cfg.apiKey == "" {
		return errors.New("ANAM_API_KEY is not set: set it to your Anam API key, or run with --sandbox to use a fake Anam")
	}
	return nil
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

// devSigningSecret is what sign() signs with under --sandbox when TOOL_SIGNING_SECRET is not
// set: it is public (it is in this source file), so a webhook must never accept its URLs.
const devSigningSecret = "persona-router sandbox only: not a secret, never trust it"

// signingSecret reads TOOL_SIGNING_SECRET, the key of sign() in persona placeholders, into
// dirs. It comes from the environment only: a flag would show it in the process list. Under
// --sandbox, a missing secret is replaced by the public development secret.
func signingSecret(dirs *config.Dirs, getenv func(string) string, sandbox bool) error {
	secret := getenv("TOOL_SIGNING_SECRET")
	switch {
	case secret != "":
		if err := expression.CheckSigningSecret(secret); err != nil {
			return err
		}
	case sandbox:
		secret = devSigningSecret
	}
	dirs.SigningSecret = []byte(secret)
	return nil
}

// usesDevSecret tells whether sign() signs with the public development secret.
func usesDevSecret(dirs config.Dirs) bool { return string(dirs.SigningSecret) == devSigningSecret }

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// newIdentity builds the --auth mode's identifier.
func newIdentity(ctx context.Context, cfg serveConfig, log *slog.Logger) (identity.Identifier, error) {
	switch cfg.auth {
	case "jwt":
		opts := cfg.jwt
		opts.HTTPClient = productionHTTPClient()
		opts.OnRefreshError = func(err error) {
			log.Error("fetching the JWKS failed; tokens signed with its keys fail until it succeeds", "url", opts.JWKSURL, "error", err.Error())
		}
		return identity.NewJWT(ctx, opts)
	case "header":
		log.Warn("identity comes from request headers: only safe behind an authenticating proxy that sets them on every request",
			"user_header", cfg.userHeader, "email_header", cfg.emailHeader)
		return identity.Header{UserHeader: cfg.userHeader, EmailHeader: cfg.emailHeader}, nil
	}
	return identity.Anonymous{}, nil
}

func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

func runServe(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) (err error) {
	cfg, done, err := parseServeFlags(args, getenv, stderr)
	if done || err != nil {
		return err
	}
	// Logs to a file or pipe are written in batches, not a write(2) per line; every return
	// writes out what is left, and a failed log write makes the service's exit fail.
	logw := stderr
	if f, ok := stderr.(*os.File); ok {
		buffered := logbuf.New(f, logbuf.DefaultSize, logbuf.DefaultInterval)
		defer func() {
			if cerr := buffered.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("writing the log: %w", cerr))
			}
		}()
		logw = buffered
	}
	log := newLogger(cfg.logFormat, logw)
	if usesDevSecret(cfg.dirs) {
		log.Warn("TOOL_SIGNING_SECRET is not set: --sandbox signs tool URLs with a fixed, public development secret; no webhook may trust them. Set TOOL_SIGNING_SECRET (at least 32 random bytes) before pointing real webhooks at this service")
	}

	metrics := server.NewMetrics()
	configs, err := reload.New(cfg.dirs, cfg.reloadTimeout, log, reload.NewMetrics(metrics.Registry))
	if err != nil {
		errs := source.AsErrors(err)
		for _, e := range errs {
			log.Error("configuration error", "error", e.Error())
		}
		log.Error("configuration rejected: not starting", "errors", len(errs), "rules", cfg.dirs.Rules, "personas", cfg.dirs.Personas)
		return exitError{err}
	}
	snap := configs.Current()
	ctx, stopReloading := context.WithCancel(ctx)
	defer stopReloading()
	go configs.Run(ctx)
	if cfg.watch {
		go func() {
			if err := configs.Watch(ctx); err != nil {
				log.Error("file watching stopped; edits go live only through SIGHUP, /admin/reload or --poll-interval", "error", err.Error())
			}
		}()
	}
	if cfg.poll > 0 {
		go configs.Poll(ctx, cfg.poll)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_, _ = configs.Reload(ctx, reload.TriggerSignal)
			}
		}
	}()

	anamHTTP := productionHTTPClient()
	if t := anamHTTP.Transport.(*http.Transport); cfg.anamTimeout <= t.ResponseHeaderTimeout {
		// The call's deadline (--anam-timeout) ends the wait for Anam's answer first: no
		// second timer per request for its headers.
		t.ResponseHeaderTimeout = 0
	}
	client := anam.NewClient(cfg.anamURL, cfg.apiKey, anamHTTP, cfg.anamTimeout)
	if cfg.sandbox {
		log.Warn("SANDBOX MODE: session tokens come from an in-process fake Anam and are not real; never use this in production")
		client = anam.NewClient("http://anam.sandbox", "sandbox", anam.InProcess(&anam.Fake{APIKey: "sandbox"}), cfg.anamTimeout)
		cfg.anamURL = "in-process fake"
	}
	ident, err := newIdentity(ctx, cfg, log)
	if err != nil {
		return err
	}
	var limiter ratelimit.Limit
	var store budget.Store
	storeState := "memory"
	if cfg.redisURL != "" {
		rdb, err := budget.DialRedis(cfg.redisURL, cfg.redisPassword)
		if err != nil {
			return err
		}
		defer rdb.Close()
		redis.SetLogger(quietRedisLog{log})
		store = budget.NewRedis(rdb, cfg.redisPrefix)
		storeState = "redis"
		if cfg.rateLimit != "" {
			spec, _ := ratelimit.ParseSpec(cfg.rateLimit)
			if limiter, err = ratelimit.NewRedis(rdb, cfg.redisPrefix, spec, cfg.rateBurst); err != nil {
				return err
			}
		}
	} else if cfg.rateLimit != "" {
		spec, _ := ratelimit.ParseSpec(cfg.rateLimit)
		l, err := ratelimit.New(spec, cfg.rateBurst, ratelimit.DefaultMaxKeys)
		if err != nil {
			return err
		}
		limiter = l
	}
	srv, err := server.New(server.Options{
		Logger:                log,
		Configs:               configs,
		Reloader:              configs,
		ReloadTimeout:         cfg.reloadTimeout,
		Anam:                  client,
		Metrics:               metrics,
		AdminToken:            cfg.adminToken,
		CORSOrigins:           cfg.corsOrigins,
		DefaultSessionSeconds: cfg.sessionSeconds,
		Budgets:               store,
		StoreState:            storeState,
		DenyOnStoreError:      cfg.onStoreError == "deny",
		Identity:              ident,
		RateLimit:             limiter,
		TrustedProxies:        cfg.trustedProxies,
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.addr, err)
	}
	httpServer := server.HTTPServer(cfg.addr, srv, cfg.anamTimeout, log)
	// Every request's context derives from requests, so that the requests still running when
	// the shutdown grace is over can be cut short.
	requests, cutShort := context.WithCancelCause(context.Background())
	defer cutShort(nil)
	httpServer.BaseContext = func(net.Listener) context.Context { return requests }
	log.Info("listening", "addr", ln.Addr().String(), "config_version", snap.Version,
		"personas", len(snap.PersonaIDs()), "rules", len(snap.Rules()), "sandbox", cfg.sandbox,
		"admin_api", cfg.adminToken != "", "anam_url", cfg.anamURL, "watch", cfg.watch, "poll_interval", cfg.poll.String(), "auth", cfg.auth, "rate_limit", cfg.rateLimit)

	served := make(chan error, 1)
	go func() { served <- httpServer.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests", "grace", cfg.shutdownGrace.String())
	if err := shutdown(httpServer, cfg.shutdownGrace, cutShort, log); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	<-served
	log.Info("stopped")
	return nil
}

// shutdown stops accepting connections at once and gives in-flight requests grace to finish.
// The requests still running then are cut short through cutShort — their Anam calls end, and
// they answer 503 shutting_down — and have shutdownDrain to write that answer before their
// connections are closed. Requests that outlive the grace are expected (a slow Anam), so they
// are no error: the service still exits 0.
func shutdown(s *http.Server, grace time.Duration, cutShort context.CancelCauseFunc, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	log.Warn("shutdown grace is over: requests still running are answered 503 shutting_down", "grace", grace.String())
	cutShort(server.ErrShuttingDown)
	ctx, cancel = context.WithTimeout(context.Background(), shutdownDrain)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		log.Warn("closing the connections still open after the shutdown grace", "drain", shutdownDrain.String(), "error", err.Error())
		// Close fails only on closing listeners, which the first Shutdown already closed.
		_ = s.Close()
	}
	return nil
}

// productionHTTPClient reaches Anam: connections are pooled and kept alive, and every phase
// is bounded (the call as a whole is bounded by --anam-timeout).
func productionHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 128
	t.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{Transport: t}
}
