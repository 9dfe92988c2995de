package server

import (
	"math"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
)

// userKey is where identify leaves the request's user.
const userKey = "user"

// identify finds who is asking; a missing or invalid identity is 401 with a challenge.
func (s *Server) identify() gin.HandlerFunc {
	return func(c *gin.Context) {
		user, fail := s.identity.Identify(c.Request)
		if fail != nil {
			s.metrics.authFailures.WithLabelValues(fail.Reason).Inc()
			logOf(c).authFailure = fail.Reason
			c.Header("WWW-Authenticate", fail.Challenge)
			abort(c, &apiError{code: codeUnauthorized, message: fail.Message})
			return
		}
		if user != nil {
			c.Set(userKey, user)
		}
		c.Next()
	}
}

// rateLimit refuses a caller over its limit with 429 and Retry-After. The caller is the user
// when known, else the client address (X-Forwarded-For counts only from trusted proxies).
//
// When the limit and the budgets both live in Redis, the limit is taken by the token handler
// in the same script as the request's budgets (one round trip), not here.
func (s *Server) rateLimit() gin.HandlerFunc {
	return func(c *gin.Context) {
		if s.limiter == nil || s.throttle != nil {
			c.Next()
			return
		}
		ok, wait, err := s.limiter.Take(c.Request.Context(), callerKey(c))
		if err != nil {
			if s.storeError(c, err) {
				c.Next()
			}
			return
		}
		s.storeAnswered()
		if !ok {
			s.rateLimited(c, wait)
			return
		}
		c.Next()
	}
}

// callerKey is whose rate limit a request counts against: the user when known, else the
// client address (X-Forwarded-For counts only from trusted proxies).
func callerKey(c *gin.Context) string {
	if user, ok := c.Get(userKey); ok {
		if id, ok := user.(map[string]any)["id"].(string); ok && id != "" {
			return "user:" + id
		}
	}
	return "ip:" + c.ClientIP()
}

// rateLimited answers 429 rate_limited with Retry-After.
func (s *Server) rateLimited(c *gin.Context, wait time.Duration) {
	s.metrics.rateLimited.Inc()
	c.Header("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
	abort(c, &apiError{code: codeRateLimited, message: "too many session requests; retry later"})
}
