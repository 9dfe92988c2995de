package server

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// handleHealthz answers while the process runs.
func handleHealthz() gin.HandlerFunc {
	return func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"status": "ok"})
	}
}

// handleReadyz answers 200 once a configuration is loaded. A rejected reload leaves the last
// good configuration serving, so it does not make the service unready.
func (s *Server) handleReadyz() gin.HandlerFunc {
	return func(c *gin.Context) {
		snap := s.configs.Current()
		if snap == nil {
			abort(c, &apiError{status: http.StatusServiceUnavailable, code: codeNotReady, message: "no configuration loaded yet"})
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready", "configVersion": snap.Version})
	}
}

// handleAdminExplain answers what `persona-router explain` prints for the posted context,
// metadata and user, without calling Anam.
func (s *Server) handleAdminExplain() gin.HandlerFunc {
	return func(c *gin.Context) {
		var body explainBody
		if err := decodeBody(c, &body, "context, metadata, user"); err != nil {
			abort(c, err)
			return
		}
		in := input(body.Context, body.Metadata, body.User)
		snap := s.configs.Current()
		if snap == nil {
			abort(c, &apiError{status: http.StatusServiceUnavailable, code: codeNotReady, message: "no configuration loaded yet"})
			return
		}
		c.JSON(http.StatusOK, snap.Explain(in))
	}
}
