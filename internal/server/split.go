package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/persona-router/persona-router/internal/config"
)

// splitBody is the body of POST /admin/split. Users is read by hand: a wrong type should say
// what users must be, which decodeBody's messages for objects do not.
type splitBody struct {
	Context  *string         `json:"context"`
	Metadata map[string]any  `json:"metadata"`
	Users    json.RawMessage `json:"users"`
}

// handleAdminSplit answers what `persona-router split --format json` prints: how many
// simulated signed-in users each rule, persona and overlay of a context serves.
func (s *Server) handleAdminSplit() gin.HandlerFunc {
	return func(c *gin.Context) {
		var body splitBody
		if err := decodeBody(c, &body, "context, metadata, users"); err != nil {
			abort(c, err)
			return
		}
		users := config.DefaultSplitUsers
		if len(body.Users) > 0 && string(body.Users) != "null" {
			var n float64
			if err := json.Unmarshal(body.Users, &n); err != nil || n < 1 || n > config.MaxSplitUsers || n != math.Trunc(n) {
				abort(c, invalidRequest(fmt.Sprintf("users must be a whole number from 1 to %d, got %s", config.MaxSplitUsers, body.Users)))
				return
			}
			users = int(n)
		}
		in := input(body.Context, body.Metadata, nil)
		snap := s.snapshot(c)
		if snap == nil {
			return
		}
		sp, err := snap.Split(c.Request.Context(), config.SplitInput{Context: in.Context, Metadata: in.Metadata, Users: users})
		var invalid *config.InvalidInput
		switch {
		case errors.As(err, &invalid) && invalid.Code == codeInvalidMetadata.String():
			abort(c, &apiError{code: codeInvalidMetadata, message: invalid.Error()})
		case errors.As(err, &invalid):
			abort(c, invalidRequest(invalid.Error()))
		case err != nil:
			// The client went away: nobody reads the answer.
			abort(c, &apiError{code: codeUnfinished, message: "split did not finish: " + err.Error()})
		default:
			c.JSON(http.StatusOK, sp)
		}
	}
}
