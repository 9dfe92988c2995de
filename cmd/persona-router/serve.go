package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/persona-router/persona-router/internal/anam"
	"github.com/persona-router/persona-router/internal/budget"
	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/identity"
	"github.com/persona-router/persona-router/internal/logbuf"
	"github.com/persona-router/persona-router/internal/ratelimit"
	"github.com/persona-router/persona-router/internal/reload"
	"github.com/persona-router/persona-router/internal/server"
	"github.com/persona-router/persona-router/internal/service"
	"github.com/persona-router/persona-router/internal/telemetry"
)

// serveArgs are `serve`'s flags and environment as given, before they are checked and turned
// into service.Options.
type serveArgs struct {
	addr, addrFile string
	dirs           config.Dirs
	anamURL        string
	anamTimeout    time.Duration
	sandbox        bool
	corsOrigins    []string
	logFormat      string
	watch          bool
	poll           time.Duration
	reloadTimeout  time.Duration
	apiKey         string
	adminToken     string

	auth           string
	jwt            identity.JWTOptions
	userHeader     string
	emailHeader    string
	rateLimit      string
	rateBurst      int
	trustedProxies []string

	shutdownDelay, shutdownGrace time.Duration
	sessionSeconds               int
	redisURL, redisPassword      string
	redisPrefix, onStoreError    string
	redisTimeout                 time.Duration
}

// envFlags maps each flag to the environment variable that sets it when the flag is absent.
var envFlags = []struct{ flag, env string }{
	{"addr", "ADDR"},
	{"addr-file", "ADDR_FILE"},
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
	{"shutdown-delay", "SHUTDOWN_DELAY"},
	{"shutdown-grace", "SHUTDOWN_GRACE"},
	{"default-session-seconds", "DEFAULT_SESSION_SECONDS"},
	{"redis-url", "REDIS_URL"},
	{"redis-prefix", "REDIS_PREFIX"},
	{"redis-timeout", "REDIS_TIMEOUT"},
	{"on-store-error", "ON_STORE_ERROR"},
}

// parseServeFlags reads flags, then the environment for every flag not given; a flag wins over
// its environment variable. Secrets come from the environment only. The result is checked and
// parsed once, into the options the service runs with.
func parseServeFlags(args []string, getenv func(string) string, stderr io.Writer) (opts service.Options, logFormat string, done bool, err error) {
	var cfg serveArgs
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&cfg.addr, "addr", ":8080", "address to listen on (env ADDR)")
	fs.StringVar(&cfg.addrFile, "addr-file", "", "once listening, write the address listened on to this file (atomically), for supervisors and tests using port 0; removed on exit (env ADDR_FILE)")
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
	fs.DurationVar(&cfg.redisTimeout, "redis-timeout", budget.DefaultTimeout, "how long one call to Redis may take on a request's path before --on-store-error decides (env REDIS_TIMEOUT)")
	fs.StringVar(&cfg.onStoreError, "on-store-error", "allow", "when Redis cannot answer in time: allow (the request goes ahead, a warning is logged) or deny (503 store_unavailable) (env ON_STORE_ERROR)")
	fs.IntVar(&cfg.sessionSeconds, "default-session-seconds", server.DefaultSessionSeconds, "what a session reserves of a minutes budget when its persona sets no maxSessionLengthSeconds (env DEFAULT_SESSION_SECONDS)")
	fs.DurationVar(&cfg.shutdownDelay, "shutdown-delay", 0, "on SIGTERM, how long to keep serving while /readyz answers 503, so that load balancers stop sending before the listener closes (env SHUTDOWN_DELAY)")
	fs.DurationVar(&cfg.shutdownGrace, "shutdown-grace", 15*time.Second, "on SIGTERM, how long in-flight requests may take to finish; those still running then are answered 503 (env SHUTDOWN_GRACE)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: persona-router [serve] [flags]\n(\"persona-router help\" lists the other commands: check, explain, split, diff, schema.)\n\nSecrets come from the environment only: ANAM_API_KEY, ADMIN_TOKEN, JWT_SECRET, TOOL_SIGNING_SECRET.\n\nFlags:")
		fs.PrintDefaults()
	}
	if done, err := parseFlags(fs, args, stderr); done {
		return opts, "", true, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, ef := range envFlags {
		if v := getenv(ef.env); v != "" && !given[ef.flag] {
			if err := fs.Set(ef.flag, v); err != nil {
				return opts, "", true, fmt.Errorf("environment variable %s=%q: %v", ef.env, v, err)
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
		return opts, "", false, err
	}
	opts, err = cfg.options()
	return opts, cfg.logFormat, false, err
}

// options checks the flags and parses them into the service's options.
func (cfg *serveArgs) options() (service.Options, error) {
	opts := service.Options{
		Addr:             cfg.addr,
		AddrFile:         cfg.addrFile,
		Dirs:             cfg.dirs,
		Sandbox:          cfg.sandbox,
		AnamURL:          cfg.anamURL,
		AnamTimeout:      cfg.anamTimeout,
		APIKey:           cfg.apiKey,
		AdminToken:       cfg.adminToken,
		CORSOrigins:      cfg.corsOrigins,
		Watch:            cfg.watch,
		PollInterval:     cfg.poll,
		ReloadTimeout:    cfg.reloadTimeout,
		Auth:             service.Auth(cfg.auth),
		JWT:              cfg.jwt,
		UserHeader:       cfg.userHeader,
		EmailHeader:      cfg.emailHeader,
		RateBurst:        cfg.rateBurst,
		RedisURL:         cfg.redisURL,
		RedisPassword:    cfg.redisPassword,
		RedisPrefix:      cfg.redisPrefix,
		RedisTimeout:     cfg.redisTimeout,
		DenyOnStoreError: cfg.onStoreError == "deny",
		SessionSeconds:   cfg.sessionSeconds,
		ShutdownDelay:    cfg.shutdownDelay,
		ShutdownGrace:    cfg.shutdownGrace,
	}
	return opts, cfg.check(&opts)
}

// check checks the flags and fills in the options that need parsing: the rate limit and the
// trusted proxies.
func (cfg *serveArgs) check(opts *service.Options) error {
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
	if cfg.redisTimeout <= 0 {
		return fmt.Errorf("--redis-timeout must be positive, got %s", cfg.redisTimeout)
	}
	if cfg.shutdownDelay < 0 {
		return fmt.Errorf("--shutdown-delay must not be negative, got %s", cfg.shutdownDelay)
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
		spec, err := ratelimit.ParseSpec(cfg.rateLimit)
		if err != nil {
			return fmt.Errorf("--rate-limit: %w", err)
		}
		opts.RateLimit = &spec
	}
	if cfg.rateBurst < 0 {
		return fmt.Errorf("--rate-burst must not be negative, got %d", cfg.rateBurst)
	}
	for _, p := range cfg.trustedProxies {
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			addr, err := netip.ParseAddr(p)
			if err != nil {
				return fmt.Errorf("--trusted-proxies: %q is not a CIDR or an IP address", p)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		opts.TrustedProxies = append(opts.TrustedProxies, prefix)
	}
	if !cfg.sandbox && cfg.apiKey == "" {
		return errors.New("ANAM_API_KEY is not set: set it to your Anam API key, or run with --sandbox to use a fake Anam")
	}
	if i := strings.IndexFunc(cfg.apiKey, func(r rune) bool { return r <= ' ' || r >= 0x7f }); i >= 0 {
		// The key goes in an Authorization header, where such a character cannot go: every
		// call would fail. The message names the place, never the key.
		return fmt.Errorf("ANAM_API_KEY has a space, control or non-ASCII character at byte %d of %d, which cannot be sent in an HTTP header (a secret file's trailing newline is the usual cause)", i+1, len(cfg.apiKey))
	}
	return nil
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

func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

// runServe runs the service until ctx ends.
// tracesFlushTimeout bounds flushing the spans not yet exported at shutdown.
const tracesFlushTimeout = 5 * time.Second

func runServe(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) (err error) {
	opts, logFormat, done, err := parseServeFlags(args, getenv, stderr)
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
	opts.Logger = newLogger(logFormat, logw)
	if usesDevSecret(opts.Dirs) {
		opts.Logger.Warn("TOOL_SIGNING_SECRET is not set: --sandbox signs tool URLs with a fixed, public development secret; no webhook may trust them. Set TOOL_SIGNING_SECRET (at least 32 random bytes) before pointing real webhooks at this service")
	}
	// Tracing: off (nil) unless the OTEL_* environment asks for it; spans are flushed once the
	// service has stopped.
	tracer, stopTracing, err := telemetry.Setup(ctx, getenv, opts.Logger)
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), tracesFlushTimeout)
		defer cancel()
		if err := stopTracing(ctx); err != nil {
			opts.Logger.Warn("flushing traces at shutdown failed; the last spans may be lost", "error", err.Error())
		}
	}()
	opts.TracerProvider = tracer
	err = service.Run(ctx, opts)
	if errors.Is(err, service.ErrConfigRejected) {
		return exitError{err}
	}
	return err
}
