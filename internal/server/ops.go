package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/persona-router/persona-router/internal/reload"
)

// handleHealthz answers while the process runs.
func handleHealthz() gin.HandlerFunc {
	return func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"status": "ok"})
	}
}

// handleReadyz answers 200 when the service wants requests: 503 not_ready once it has begun to
// shut down (see Drain), and, with --on-store-error deny, while the store of budgets and limits
// does not answer, as every token request would then be refused. A rejected reload leaves the
// last good configuration serving, so it does not make the service unready.
func (s *Server) handleReadyz() gin.HandlerFunc {
	return func(c *gin.Context) {
		if s.draining.Load() {
			abort(c, &apiError{code: codeNotReady, message: "the service is shutting down"})
			return
		}
		if s.denyOnStore && s.storeCheck != nil {
			if err := s.storeCheck(c.Request.Context()); err != nil {
				s.storeFailed(logOf(c).id, err)
				abort(c, &apiError{code: codeNotReady, message: "budgets and limits cannot be checked right now (--on-store-error deny)"})
				return
			}
			s.storeAnswered()
		}
		snap := s.snapshot(c)
		if snap == nil {
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
		if err := decodeBody(c, &body, "context, metadata, user, all"); err != nil {
			abort(c, err)
			return
		}
		in := input(body.Context, body.Metadata, body.User)
		snap := s.snapshot(c)
		if snap == nil {
			return
		}
		e := snap.Explain(in, body.All)
		if err := snap.ExplainBudgets(c.Request.Context(), &e, in, s.budgets, "ip:"+c.ClientIP()); err != nil {
			s.storeFailed(logOf(c).id, err)
		} else if s.budgets != nil {
			s.storeAnswered()
		}
		c.JSON(http.StatusOK, e)
	}
}

// handleAdminReload runs the loader now, even when no file changed: 200 with the reload status
// when the new configuration is applied, 422 with every error when it is rejected (the last good
// configuration keeps serving), 503 when it could not run in time.
func (s *Server) handleAdminReload() gin.HandlerFunc {
	return func(c *gin.Context) {
		// A reload ends within its own deadline, but may have to wait for one already running:
		// the answer comes within the deadline and a second, always as JSON.
		wait := s.reloadTimeout + time.Second
		ctx, cancel := context.WithTimeout(c.Request.Context(), wait)
		defer cancel()
		st, err := s.reloader.Reload(ctx, reload.TriggerAdmin)
		if errors.Is(err, context.DeadlineExceeded) {
			abort(c, &apiError{code: codeUnfinished, message: fmt.Sprintf("reload did not finish within %s: another reload was running; the last good configuration keeps serving, try again", wait)})
			return
		}
		if err != nil {
			abort(c, &apiError{code: codeUnfinished, message: "reload did not run: " + err.Error()})
			return
		}
		if !st.OK {
			abort(c, &apiError{code: codeInvalidConfig, message: "configuration rejected; the last good configuration keeps serving", errs: st.Errors})
			return
		}
		c.JSON(http.StatusOK, st)
	}
}

// configRule is one rule as /admin/config lists it.
type configRule struct {
	Name     string `json:"name"`
	Priority int    `json:"priority"`
	// Persona is empty for an overlay, which picks none.
	Persona string `json:"persona"`
	Overlay bool   `json:"overlay,omitempty"`
}

// handleAdminConfig describes the configuration serving and the last reload attempt.
func (s *Server) handleAdminConfig() gin.HandlerFunc {
	return func(c *gin.Context) {
		snap := s.snapshot(c)
		if snap == nil {
			return
		}
		rules := make([]configRule, 0, len(snap.Rules()))
		for _, r := range snap.Rules() {
			rules = append(rules, configRule{Name: r.Name, Priority: r.Priority, Persona: r.Persona, Overlay: r.Overlay})
		}
		c.JSON(http.StatusOK, gin.H{
			"version":    snap.Version,
			"loadedAt":   snap.LoadedAt,
			"personas":   snap.PersonaIDs(),
			"rules":      rules,
			"store":      gin.H{"kind": s.storeState, "failing": s.storeFailing.Load()},
			"lastReload": s.reloader.LastReload(),
		})
	}
}
