package server

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// The playground is one page and its script and style sheet, embedded in the binary: no CDN,
// no build step. The page holds no data; what it shows comes from admin calls it makes with
// the token typed into it.
var (
	//go:embed playground.html
	playgroundHTML []byte
	//go:embed playground.js
	playgroundJS []byte
	//go:embed playground.css
	playgroundCSS []byte
)

// playgroundCSP lets the page load only its own script and style sheet and call only its own
// origin. Trusted Types make the browser refuse every HTML sink (innerHTML and the like): the
// page shows rendered personas, which hold user-controlled text, as text only.
const playgroundCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'; trusted-types 'none'"

// handlePlaygroundFile serves one of the playground's files. They are served without the
// admin token — a browser cannot send one when it navigates to a page — and only when the
// admin API is on.
func handlePlaygroundFile(contentType string, body []byte) gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.Writer.Header()
		h.Set("Content-Security-Policy", playgroundCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		c.Data(http.StatusOK, contentType, body)
	}
}

// metadataKey is one key the metadata schema declares, as /admin/metadata-schema lists it.
type metadataKey struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Enum []any  `json:"enum,omitempty"`
}

// handleAdminMetadataSchema lists the metadata keys the configuration serving declares, for
// the playground to offer. An empty list means any key is accepted.
func (s *Server) handleAdminMetadataSchema() gin.HandlerFunc {
	return func(c *gin.Context) {
		snap := s.snapshot(c)
		if snap == nil {
			return
		}
		fields := snap.Metadata().Fields()
		keys := make([]metadataKey, 0, len(fields))
		for _, f := range fields {
			keys = append(keys, metadataKey{Name: f.Name, Type: f.Type, Enum: f.Enum})
		}
		c.JSON(http.StatusOK, gin.H{"configVersion": snap.Version, "keys": keys})
	}
}
