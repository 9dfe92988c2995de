package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/gin-contrib/cors"
	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/persona-router/persona-router/internal/identity"
)

// requestLog is what the request's log line reports, filled in by the handlers along the
// way. It travels in the gin context under logKey as one value.
type requestLog struct {
	id          string
	context     string
	hasContext  bool
	persona     string
	rule        string
	overlays    []string
	version     string
	decided     bool
	anamStatus  int
	code        string
	authFailure string
}

const logKey = "persona-router.log"

// logOf returns the request's log record.
func logOf(c *gin.Context) *requestLog {
	if v, ok := c.Get(logKey); ok {
		return v.(*requestLog)
	}
	rl := &requestLog{}
	c.Set(logKey, rl)
	return rl
}

const requestIDHeader = "X-Request-Id"

// validRequestID accepts the ids proxies and clients generate (UUIDs, hex, base64url) and
// nothing that could forge log lines.
var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// requestID takes the request's X-Request-Id, or makes one, and echoes it.
func (s *Server) requestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader(requestIDHeader)
		if !validRequestID.MatchString(id) {
			id = uuid.NewString()
		}
		logOf(c).id = id
		c.Header(requestIDHeader, id)
		c.Next()
	}
}

// observe logs one line per request and records the HTTP metrics. It logs what handlers left
// under the log.* keys, and never a header or a body.
func (s *Server) observe() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		elapsed := time.Since(start)
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		status := c.Writer.Status()
		s.metrics.httpRequests.WithLabelValues(route, strconv.Itoa(status)).Inc()
		s.metrics.httpDuration.WithLabelValues(route).Observe(elapsed.Seconds())

		rl := logOf(c)
		attrs := make([]slog.Attr, 0, 12)
		attrs = append(attrs,
			slog.String("request_id", rl.id),
			slog.String("method", c.Request.Method),
			slog.String("route", route),
			slog.Int("status", status),
			slog.Float64("latency_ms", float64(elapsed.Microseconds())/1000),
		)
		if s.tracing {
			if id := traceRequest(c, rl); id != "" {
				attrs = append(attrs, slog.String("trace_id", id))
			}
		}
		if rl.hasContext {
			attrs = append(attrs, slog.String("context", rl.context))
		}
		if rl.decided {
			attrs = append(attrs, slog.String("persona", rl.persona), slog.String("rule", rl.rule), slog.String("config_version", rl.version))
			if len(rl.overlays) > 0 {
				attrs = append(attrs, slog.Any("overlays", rl.overlays))
			}
		}
		if rl.anamStatus != 0 {
			attrs = append(attrs, slog.Int("anam_status", rl.anamStatus))
		}
		if rl.code != "" {
			attrs = append(attrs, slog.String("code", rl.code))
		}
		if rl.authFailure != "" {
			attrs = append(attrs, slog.String("auth_failure", rl.authFailure))
		}
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		}
		s.log.LogAttrs(c.Request.Context(), level, "request", attrs...)
	}
}

// recover turns a panic into a 500 and a log line, without the request's headers (they may
// hold credentials).
func (s *Server) recover() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("panic serving request", "request_id", logOf(c).id, "panic", p)
				abort(c, &apiError{code: codeInternal, message: "internal error"})
			}
		}()
		c.Next()
	}
}

// noStore keeps answers out of every cache: a session token is a per-user secret.
func noStore() gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Header("Cache-Control", "no-store")
		c.Next()
	}
}

// cors allows the configured origins to call the API from browsers. A request from any other
// origin is refused with 403 and no CORS headers, before a token is minted for it.
func (s *Server) cors() gin.HandlerFunc {
	return cors.New(cors.Config{
		AllowOrigins:  s.corsOrigins,
		AllowWildcard: true,
		AllowMethods:  []string{http.MethodPost, http.MethodOptions},
		AllowHeaders:  []string{"Content-Type", "Authorization", requestIDHeader, "traceparent", "tracestate"},
		ExposeHeaders: []string{requestIDHeader, "Retry-After"},
		MaxAge:        10 * time.Minute,
	})
}

// requireAdmin lets a request through only with Authorization: Bearer <ADMIN_TOKEN> (the
// scheme in any case). Both sides are hashed before the constant-time comparison, so neither
// the content nor the length of the token leaks through timing.
func (s *Server) requireAdmin() gin.HandlerFunc {
	want := sha256.Sum256([]byte(s.adminToken))
	return func(c *gin.Context) {
		got, ok := identity.BearerToken(c.GetHeader("Authorization"))
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			c.Header("WWW-Authenticate", `Bearer realm="persona-router admin"`)
			abort(c, &apiError{code: codeUnauthorized, message: "admin token missing or wrong"})
			return
		}
		c.Next()
	}
}
