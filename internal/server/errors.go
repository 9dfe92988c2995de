package server

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/persona-router/persona-router/internal/config"
)

// apiError is an error answer: the status and the stable code a client can act on, and a
// message for people. It never carries Anam's words, a key or a token.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

// The error codes a client of the token endpoint can meet.
const (
	codeInvalidRequest      = "invalid_request"
	codeBodyTooLarge        = "body_too_large"
	codeRequestTimeout      = "request_timeout"
	codeRenderFailed        = "persona_render_failed"
	codeUpstreamAuthFailed  = "upstream_auth_failed"
	codeUpstreamRejected    = "upstream_rejected"
	codeUpstreamRateLimited = "upstream_rate_limited"
	codeUpstreamUnavailable = "upstream_unavailable"
	codeUpstreamTimeout     = "upstream_timeout"
	codeUnauthorized        = "unauthorized"
	codeNotFound            = "not_found"
	codeMethodNotAllowed    = "method_not_allowed"
	codeInternal            = "internal_error"
	codeNotReady            = "not_ready"
	codeInvalidConfig       = "invalid_config"
	codeInvalidMetadata     = "invalid_metadata"
	codeRateLimited         = "rate_limited"
	codeBudgetExhausted     = "budget_exhausted"
	codeStoreUnavailable    = "store_unavailable"
	codeShuttingDown        = "shutting_down"
)

// ErrShuttingDown is the cause with which the service cancels the requests still running when
// its shutdown grace is over (context.CancelCauseFunc on the requests' base context). A token
// request whose Anam call ends for it answers 503 shutting_down.
var ErrShuttingDown = errors.New("the service is shutting down")

func invalidRequest(msg string) *apiError {
	return &apiError{status: http.StatusBadRequest, code: codeInvalidRequest, message: msg}
}

// abort answers with e as JSON {"error", "code"} and records the code for the request log.
func abort(c *gin.Context, e *apiError) {
	logOf(c).code = e.code
	c.AbortWithStatusJSON(e.status, gin.H{"error": e.message, "code": e.code})
}

// snapshot returns the configuration in force for this request, or answers 503 not_ready and
// returns nil when none is loaded yet.
func (s *Server) snapshot(c *gin.Context) *config.Snapshot {
	snap := s.configs.Current()
	if snap == nil {
		abort(c, &apiError{status: http.StatusServiceUnavailable, code: codeNotReady, message: "no configuration loaded yet"})
	}
	return snap
}
