package server

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/persona-router/persona-router/internal/anam"
	"github.com/persona-router/persona-router/internal/budget"
	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/decide"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/schema"
)

// tokenResponse is the answer of POST /api/session-token.
type tokenResponse struct {
	SessionToken string `json:"sessionToken"`
	Persona      string `json:"persona"`
	// Rule is the rule that matched, null for the default persona.
	Rule *string `json:"rule"`
	// ConfigVersion is the configuration that decided.
	ConfigVersion string `json:"configVersion"`
}

// handleSessionToken routes the request to a persona, renders it and asks Anam for a session
// token: request → decide on one snapshot → render → Anam → response.
func (s *Server) handleSessionToken() gin.HandlerFunc {
	return func(c *gin.Context) {
		in, apiErr := s.decodeTokenRequest(c)
		if apiErr != nil {
			abort(c, apiErr)
			return
		}
		rl := logOf(c)
		rl.context, rl.hasContext = in.Context, true
		snap := s.snapshot(c)
		if snap == nil {
			return
		}
		if err := snap.Metadata().Validate(in.Metadata); err != nil {
			abort(c, &apiError{code: codeInvalidMetadata, message: err.Error()})
			return
		}
		res := snap.Decide(in, false)
		rule := ""
		if res.Rule != nil {
			rule = res.Rule.Name
		}
		rl.persona, rl.rule, rl.version, rl.decided = res.Persona, rule, snap.Version, true
		for _, o := range res.Overlays {
			rl.overlays = append(rl.overlays, o.Name)
		}
		for _, f := range res.Failed {
			s.log.Warn("rule failed at run time; counted as not matched", "request_id", rl.id,
				"rule", f.Rule.Name, "config_version", snap.Version, "error", f.Err.Error())
		}
		if res.Err != nil {
			s.log.Error("persona cannot be rendered for this request", "request_id", rl.id,
				"persona", res.Persona, "rule", rule, "config_version", snap.Version, "error", res.Err.Error())
			abort(c, &apiError{code: codeRenderFailed,
				message: "the persona chosen for this request cannot be rendered; the service's log says why"})
			return
		}
		s.metrics.decided(res.Persona, rule)

		reservation, ok := s.reserve(c, snap, in, &res)
		if !ok {
			res.Release()
			return
		}
		start := time.Now()
		token, err := s.anam.CreateSessionToken(c.Request.Context(), res.Body)
		res.Release()
		if err != nil && reservation != nil {
			// The session never started: give its budget back.
			if rerr := s.budgets.Release(context.WithoutCancel(c.Request.Context()), *reservation); rerr != nil {
				s.storeFailed(rl.id, rerr)
			}
		}
		s.metrics.anamDuration.Observe(time.Since(start).Seconds())
		if err != nil {
			abort(c, s.upstreamError(c, err))
			return
		}
		s.metrics.anamSuccess.Inc()
		rl.anamStatus = http.StatusOK
		answer := tokenResponse{SessionToken: token, Persona: res.Persona, ConfigVersion: snap.Version}
		if res.Rule != nil {
			answer.Rule = &res.Rule.Name
		}
		writeToken(c, answer)
	}
}

func (s *Server) decodeTokenRequest(c *gin.Context) (expression.Input, *apiError) {
	var body tokenBody
	if err := decodeTokenBody(c, &body); err != nil {
		return expression.Input{}, err
	}
	if body.Context != nil && !schema.ValidContext(*body.Context) {
		return expression.Input{}, invalidRequest(schema.ContextRule)
	}
	user, _ := c.Get(userKey)
	u, _ := user.(map[string]any)
	return input(body.Context, body.Metadata, u), nil
}

// upstreamError maps a failed Anam call to the caller's answer, and logs what Anam said —
// which never reaches the caller. A call cut short because the service is shutting down is
// not Anam's doing, and is not counted as an Anam outcome.
func (s *Server) upstreamError(c *gin.Context, err error) *apiError {
	rl := logOf(c)
	id := rl.id
	if errors.Is(context.Cause(c.Request.Context()), ErrShuttingDown) {
		s.log.Warn("Anam call cut short: the service is shutting down", "request_id", id)
		return &apiError{code: codeShuttingDown, message: "the service is shutting down; retry"}
	}
	var ae *anam.Error
	if !errors.As(err, &ae) {
		s.log.Error("anam call failed", "request_id", id, "error", err.Error())
		s.metrics.anamRequests.WithLabelValues(anam.Unavailable.String()).Inc()
		return &apiError{code: codeUpstreamUnavailable, message: "Anam could not be reached"}
	}
	s.metrics.anamRequests.WithLabelValues(ae.Kind.String()).Inc()
	if ae.Status != 0 {
		rl.anamStatus = ae.Status
	}
	attrs := []any{"request_id", id, "anam_status", ae.Status, "attempts", ae.Attempts, "detail", ae.Detail}
	switch ae.Kind {
	case anam.AuthFailed:
		s.log.Error("Anam refused the API key: check ANAM_API_KEY and its permissions", attrs...)
		return &apiError{code: codeUpstreamAuthFailed, message: "Anam refused this service's credentials"}
	case anam.Rejected:
		s.log.Error("Anam rejected the session-token request: check the persona configuration", attrs...)
		return &apiError{code: codeUpstreamRejected, message: "Anam rejected the session request"}
	case anam.RateLimited:
		s.log.Warn("Anam rate-limited the session-token request", attrs...)
		c.Header("Retry-After", strconv.Itoa(max(int(math.Ceil(ae.RetryAfter.Seconds())), 1)))
		return &apiError{code: codeUpstreamRateLimited, message: "Anam is rate-limiting session requests; retry later"}
	case anam.Timeout:
		s.log.Error("Anam did not answer in time", attrs...)
		return &apiError{code: codeUpstreamTimeout, message: "Anam did not answer in time"}
	default:
		s.log.Error("Anam is unavailable", attrs...)
		return &apiError{code: codeUpstreamUnavailable, message: "Anam is unavailable"}
	}
}

// reserve spends the budgets that apply to a decided request, lowering the session's length to
// what a minutes budget has left. It answers the request itself (429 budget_exhausted, or 503
// when the store fails) and returns false when the request must stop; the reservation is nil
// when no budget applies or the store failed and requests go ahead.
func (s *Server) reserve(c *gin.Context, snap *config.Snapshot, in expression.Input, res *decide.Result) (*budget.Reservation, bool) {
	rl := logOf(c)
	now := time.Now()
	var claims []budget.Claim
	var failed []error
	if len(snap.Budgets()) > 0 {
		// The client address is worked out only for budgets that may need it.
		claims, failed = snap.Claims(in, res, "ip:"+c.ClientIP(), now)
	}
	for _, err := range failed {
		s.log.Warn("budget failed at run time; it does not apply to this request", "request_id", rl.id,
			"config_version", snap.Version, "error", err.Error())
	}
	if len(claims) == 0 && s.throttle == nil {
		return nil, true
	}
	seconds := res.SessionSeconds(s.sessionSeconds)
	var r budget.Reservation
	var err error
	if s.throttle != nil {
		// The rate limit and the budgets in one script: one round trip to Redis.
		interval, burst := s.throttle.Rate()
		t := &budget.Throttle{Key: callerKey(c), Interval: interval, Burst: burst}
		r, err = s.budgets.(throttledReserver).ReserveThrottled(c.Request.Context(), now, claims, seconds, t)
	} else {
		r, err = s.budgets.Reserve(c.Request.Context(), now, claims, seconds)
	}
	var refusal *budget.Refusal
	var throttled *budget.Throttled
	if err == nil || errors.As(err, &throttled) || errors.As(err, &refusal) {
		s.storeAnswered()
	}
	switch {
	case errors.As(err, &throttled):
		s.rateLimited(c, throttled.Wait)
		return nil, false
	case errors.As(err, &refusal):
		s.metrics.budgetRefusals.WithLabelValues(refusal.Budget).Inc()
		c.Header("Retry-After", strconv.Itoa(refusal.RetryAfterSeconds()))
		abort(c, &apiError{code: codeBudgetExhausted, message: refusal.Error()})
		return nil, false
	case err != nil:
		return nil, s.storeError(c, err)
	}
	for _, cl := range claims {
		s.metrics.reserved(cl.Budget.Name)
	}
	if r.Seconds < seconds {
		if err := res.Clamp(r.Seconds); err != nil {
			s.log.Error("lowering the session's length to its budget failed", "request_id", rl.id, "error", err.Error())
		}
	}
	return &r, true
}

// storeError handles a store that could not answer a request's budgets or rate limit, as
// --on-store-error says: it answers 503 store_unavailable and returns false (deny), or lets the
// request go ahead and returns true (allow). Either way the failure is counted and logged, at
// most once a second.
func (s *Server) storeError(c *gin.Context, err error) bool {
	s.storeFailed(logOf(c).id, err)
	if s.denyOnStore {
		abort(c, &apiError{code: codeStoreUnavailable, message: "budgets and limits cannot be checked right now; retry"})
		return false
	}
	return true
}

// storeAnswered records that the store answered a call (a refusal is an answer), so
// /admin/config stops reporting it as failing. It writes only on a change.
func (s *Server) storeAnswered() {
	if s.storeFailing.Load() {
		s.storeFailing.Store(false)
	}
}

// storeFailed counts and logs a failed store call, at most one line a second.
func (s *Server) storeFailed(requestID string, err error) {
	s.metrics.storeErrors.Inc()
	s.storeFailing.Store(true)
	now := time.Now().Unix()
	if last := s.storeWarned.Load(); last != now && s.storeWarned.CompareAndSwap(last, now) {
		what := "the request goes ahead unbudgeted and unlimited (--on-store-error allow)"
		if s.denyOnStore {
			what = "the request is refused (--on-store-error deny)"
		}
		s.log.Warn("budget and limit store unavailable: "+what, "request_id", requestID, "error", err.Error())
	}
}
