package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
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

// validRequestID accepts the ids proxies and clients generate (UUIDs, hex, base64url) — 1 to
// 128 of A-Z a-z 0-9 . _ : - — and nothing that could forge log lines.
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// newRequestID returns a random (version 4) UUID. Request ids need to be unique, not
// unguessable: math/rand/v2's generator, seeded from the system's randomness in every process,
// gives that without a system call.
func newRequestID() string {
	var id uuid.UUID
	binary.LittleEndian.PutUint64(id[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(id[8:], rand.Uint64())
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id.String()
}

// observe runs every request: it takes the request's X-Request-Id, or makes one, and echoes
// it; answers a panic with a 500; then logs one line and records the HTTP metrics. It logs
// what handlers left in the request's log record, and never a header or a body. One
// middleware doing all of this costs less per request than one for each.
func (s *Server) observe() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		st := requestStates.Get().(*requestState)
		rl := &st.log
		rl.id = c.Request.Header.Get(requestIDHeader)
		if !validRequestID(rl.id) {
			rl.id = newRequestID()
		}
		// When no middleware before this one has set a key (the tracing middleware does), the
		// context's Keys map is the pooled one, taken back when the request is done.
		pooledKeys := c.Keys == nil
		if pooledKeys {
			c.Keys = st.keys
			c.Keys[logKey] = rl
		} else {
			c.Set(logKey, rl)
		}
		c.Writer.Header()[requestIDHeader] = []string{rl.id}
		s.serveRecovering(c, rl)
		s.logRequest(c, rl, start, &st.attrs)
		if pooledKeys {
			c.Keys = nil
		}
		st.release()
	}
}

// requestState is what observe keeps for a request: its log record, and a map for the gin
// context's Keys that carries the record to the handlers. Both are reused from request to
// request (c.Set would make a map for every request); nothing keeps them once the request's
// line is logged.
type requestState struct {
	log  requestLog
	keys map[any]any
	// attrs holds the attributes of the request's line.
	attrs [14]slog.Attr
}

var requestStates = sync.Pool{New: func() any { return &requestState{keys: make(map[any]any, 2)} }}

func (st *requestState) release() {
	st.log = requestLog{}
	clear(st.keys)
	clear(st.attrs[:])
	requestStates.Put(st)
}

// logRequest counts the request in the HTTP metrics, puts what its log line reports on its
// span, and logs the line.
func (s *Server) logRequest(c *gin.Context, rl *requestLog, start time.Time, buf *[14]slog.Attr) {
	elapsed := time.Since(start)
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	status := c.Writer.Status()
	s.metrics.observeHTTP(route, status, elapsed)
	// The span gets the request's attributes whether or not the line is logged.
	var traceID string
	if s.tracing {
		traceID = traceRequest(c, rl)
	}

	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	ctx := c.Request.Context()
	h := s.log.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	// The record goes to the handler directly: Logger.LogAttrs would also look up its
	// caller, which no handler of this service prints.
	attrs := append(buf[:0],
		slog.String("request_id", rl.id),
		slog.String("method", c.Request.Method),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Float64("latency_ms", float64(elapsed.Microseconds())/1000),
	)
	if traceID != "" {
		attrs = append(attrs, slog.String("trace_id", traceID))
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
	r := slog.NewRecord(time.Now(), level, "request", 0)
	if s.inlineGroups {
		// The handler writes the line before Handle returns, and writes the attributes of a
		// group without a key as if they were the record's own: as one such group, the line's
		// attributes fit in the record's own storage, which would otherwise grow for every
		// request beyond five attributes.
		r.AddAttrs(slog.Attr{Value: slog.GroupValue(attrs...)})
	} else {
		r.AddAttrs(attrs...)
	}
	_ = h.Handle(ctx, r)
}

// serveRecovering runs the rest of the chain, turning a panic into a 500 and a log line,
// without the request's headers (they may hold credentials).
func (s *Server) serveRecovering(c *gin.Context, rl *requestLog) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.Error("panic serving request", "request_id", rl.id, "panic", p)
			abort(c, &apiError{code: codeInternal, message: "internal error"})
		}
	}()
	c.Next()
}

// noStore keeps answers out of every cache: a session token is a per-user secret.
func noStore() gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Writer.Header()["Cache-Control"] = noStoreValue
		c.Next()
	}
}

// noStoreValue is shared by every answer: net/http only reads header values, and replaces a
// slice to change one.
var noStoreValue = []string{"no-store"}

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
