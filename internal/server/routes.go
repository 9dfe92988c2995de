package server

import (
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes lists the whole HTTP surface.
func (s *Server) routes() {
	r := s.engine
	api := r.Group("/api", noStore())
	if len(s.corsOrigins) > 0 {
		api.Use(s.cors())
		// The CORS middleware answers preflights; the route only has to exist.
		api.OPTIONS("/session-token")
	}
	api.POST("/session-token", s.identify(), s.rateLimit(), s.handleSessionToken())

	r.GET("/healthz", handleHealthz())
	r.GET("/readyz", s.handleReadyz())
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{})))

	if s.adminToken != "" {
		admin := r.Group("/admin", s.requireAdmin())
		admin.POST("/explain", s.handleAdminExplain())
		admin.POST("/split", s.handleAdminSplit())
		admin.POST("/reload", s.handleAdminReload())
		admin.GET("/config", s.handleAdminConfig())
		admin.GET("/metadata-schema", s.handleAdminMetadataSchema())
		// The playground's files hold no data, and a browser navigating to a page cannot send
		// the token: they are served without it. Every call the page makes sends it.
		r.GET("/admin/playground", handlePlaygroundFile("text/html; charset=utf-8", playgroundHTML))
		r.GET("/admin/playground.js", handlePlaygroundFile("text/javascript; charset=utf-8", playgroundJS))
		r.GET("/admin/playground.css", handlePlaygroundFile("text/css; charset=utf-8", playgroundCSS))
	}

	r.NoRoute(func(c *gin.Context) {
		abort(c, &apiError{code: codeNotFound, message: "no such endpoint"})
	})
	r.NoMethod(func(c *gin.Context) {
		abort(c, &apiError{code: codeMethodNotAllowed, message: "method not allowed"})
	})
}
