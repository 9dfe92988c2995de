package server

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/persona-router/persona-router/internal/config"
)

// apiError is an error answer: the code a client can act on (its HTTP status comes from
// codes), and a message for people. It never carries Anam's words, a key or a token.
type apiError struct {
	code    errorCode
	message string
	// errs lists the problems behind the answer, answered as "errors" when set.
	errs []string
}

func (e *apiError) Error() string { return e.code.String() + ": " + e.message }

// errorCode is one way a request can fail. What the client gets for it, the stable code and
// the HTTP status, is its row in codes.
type errorCode int

// The ways a request can fail.
const (
	codeInvalidRequest errorCode = iota
	codeBodyTooLarge
	codeRequestTimeout
	codeRenderFailed
	codeUpstreamAuthFailed
	codeUpstreamRejected
	codeUpstreamRateLimited
	codeUpstreamUnavailable
	codeUpstreamTimeout
	codeUnauthorized
	codeNotFound
	codeMethodNotAllowed
	codeInternal
	// codeUnfinished is an admin job (a reload, a split) that could not run or finish: it
	// shares internal_error with a panic, answered 503 rather than 500.
	codeUnfinished
	codeNotReady
	codeInvalidConfig
	codeInvalidMetadata
	codeRateLimited
	codeBudgetExhausted
	codeStoreUnavailable
	codeShuttingDown
	numCodes
)

// codes is the one table from an error code to what the client gets: the code in the JSON
// body and the HTTP status. Call sites name a code; none pairs a status with it by hand.
var codes = [numCodes]struct {
	name   string
	status int
}{
	codeInvalidRequest:      {"invalid_request", http.StatusBadRequest},
	codeBodyTooLarge:        {"body_too_large", http.StatusRequestEntityTooLarge},
	codeRequestTimeout:      {"request_timeout", http.StatusRequestTimeout},
	codeRenderFailed:        {"persona_render_failed", http.StatusInternalServerError},
	codeUpstreamAuthFailed:  {"upstream_auth_failed", http.StatusBadGateway},
	codeUpstreamRejected:    {"upstream_rejected", http.StatusBadGateway},
	codeUpstreamRateLimited: {"upstream_rate_limited", http.StatusTooManyRequests},
	codeUpstreamUnavailable: {"upstream_unavailable", http.StatusBadGateway},
	codeUpstreamTimeout:     {"upstream_timeout", http.StatusGatewayTimeout},
	codeUnauthorized:        {"unauthorized", http.StatusUnauthorized},
	codeNotFound:            {"not_found", http.StatusNotFound},
	codeMethodNotAllowed:    {"method_not_allowed", http.StatusMethodNotAllowed},
	codeInternal:            {"internal_error", http.StatusInternalServerError},
	codeUnfinished:          {"internal_error", http.StatusServiceUnavailable},
	codeNotReady:            {"not_ready", http.StatusServiceUnavailable},
	codeInvalidConfig:       {"invalid_config", http.StatusUnprocessableEntity},
	codeInvalidMetadata:     {"invalid_metadata", http.StatusUnprocessableEntity},
	codeRateLimited:         {"rate_limited", http.StatusTooManyRequests},
	codeBudgetExhausted:     {"budget_exhausted", http.StatusTooManyRequests},
	codeStoreUnavailable:    {"store_unavailable", http.StatusServiceUnavailable},
	codeShuttingDown:        {"shutting_down", http.StatusServiceUnavailable},
}

// String is the code as a client reads it in the body's "code".
func (c errorCode) String() string { return codes[c].name }

// Status is the HTTP status the code is answered with.
func (c errorCode) Status() int { return codes[c].status }

// ErrShuttingDown is the cause with which the service cancels the requests still running when
// its shutdown grace is over (context.CancelCauseFunc on the requests' base context). A token
// request whose Anam call ends for it answers 503 shutting_down.
var ErrShuttingDown = errors.New("the service is shutting down")

func invalidRequest(msg string) *apiError {
	return &apiError{code: codeInvalidRequest, message: msg}
}

// abort answers with e as JSON {"error", "code"} (and "errors" when e lists them), with the
// status codes gives its code, and records the code for the request log.
func abort(c *gin.Context, e *apiError) {
	logOf(c).code = e.code.String()
	body := gin.H{"error": e.message, "code": e.code.String()}
	if e.errs != nil {
		body["errors"] = e.errs
	}
	c.AbortWithStatusJSON(e.code.Status(), body)
}

// snapshot returns the configuration in force for this request, or answers 503 not_ready and
// returns nil when none is loaded yet.
func (s *Server) snapshot(c *gin.Context) *config.Snapshot {
	snap := s.configs.Current()
	if snap == nil {
		abort(c, &apiError{code: codeNotReady, message: "no configuration loaded yet"})
	}
	return snap
}
