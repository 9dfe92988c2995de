package server

import (
	"math"
	"net/http"
	"strconv"

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
			abort(c, &apiError{status: http.StatusUnauthorized, code: codeUnauthorized, message: fail.Message})
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
func (s *Server) rateLimit() gin.HandlerFunc {
	return func(c *gin.Context) {
		if s.limiter == nil {
			c.Next()
			return
		}
		key := "ip:" + c.ClientIP()
		if user, ok := c.Get(userKey); ok {
			if id, ok := user.(map[string]any)["id"].(string); ok && id != "" {
				key = "user:" + id
			}
		}
		ok, wait, err := s.limiter.Take(c.Request.Context(), key)
		if err != nil {
			if s.storeError(c, err) {
				c.Next()
			}
			return
		}
		if !ok {
			s.metrics.rateLimited.Inc()
			c.Header("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
			abort(c, &apiError{status: http.StatusTooManyRequests, code: codeRateLimited, message: "too many session requests; retry later"})
			return
		}
		c.Next()
	}
}
