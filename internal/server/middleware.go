package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gin-contrib/cors"
	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

// Keys under which handlers leave what the request log reports.
const (
	logRequestID  = "log.request_id"
	logContext    = "log.context"
	logPersona    = "log.persona"
	logRule       = "log.rule"
	logAnamStatus = "log.anam_status"
	logCode       = "log.code"
	// logAuthFailure is the reason an identity was refused.
	logAuthFailure = "log.auth_failure"
)

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
		c.Set(logRequestID, id)
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

		attrs := make([]slog.Attr, 0, 12)
		attrs = append(attrs,
			slog.String("request_id", c.GetString(logRequestID)),
			slog.String("method", c.Request.Method),
			slog.String("route", route),
			slog.Int("status", status),
			slog.Float64("latency_ms", float64(elapsed.Microseconds())/1000),
		)
		for _, k := range []string{logContext, logPersona, logRule, logCode, logAuthFailure} {
			if v, ok := c.Get(k); ok {
				attrs = append(attrs, slog.Any(strings.TrimPrefix(k, "log."), v))
			}
		}
		if v, ok := c.Get(logAnamStatus); ok {
			attrs = append(attrs, slog.Any("anam_status", v))
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
				s.log.Error("panic serving request", "request_id", c.GetString(logRequestID), "panic", p)
				abort(c, &apiError{status: http.StatusInternalServerError, code: codeInternal, message: "internal error"})
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
		AllowMethods:  []string{http.MethodPost, http.MethodOptions},
		AllowHeaders:  []string{"Content-Type", "Authorization", requestIDHeader},
		ExposeHeaders: []string{requestIDHeader, "Retry-After"},
		MaxAge:        10 * time.Minute,
	})
}

// requireAdmin lets a request through only with Authorization: Bearer <ADMIN_TOKEN>. Both
// sides are hashed before the constant-time comparison, so neither the content nor the length
// of the token leaks through timing.
func (s *Server) requireAdmin() gin.HandlerFunc {
	want := sha256.Sum256([]byte(s.adminToken))
	return func(c *gin.Context) {
		got, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			c.Header("WWW-Authenticate", `Bearer realm="persona-router admin"`)
			abort(c, &apiError{status: http.StatusUnauthorized, code: codeUnauthorized, message: "admin token missing or wrong"})
			return
		}
		c.Next()
	}
}
