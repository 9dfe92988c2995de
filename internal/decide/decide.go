// Package decide is the runtime decision of one loaded configuration: which rule and persona
// serve a request, the session-token request rendered for it (overlays merged), the budgets
// that apply to it, and, for people, the same decision explained and checked against the rule
// tests. It reads a configuration that internal/config has loaded, compiled and linked; it
// reads no file and reports no load error of its own.
package decide

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/persona-router/persona-router/internal/budget"
	"github.com/persona-router/persona-router/internal/catalogue"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/persona"
	"github.com/persona-router/persona-router/internal/rules"
	"github.com/persona-router/persona-router/internal/schema"
)

// Decider decides for one loaded configuration. It is never modified after New returns it, so
// any number of requests may use it at once; a reload builds a new one.
type Decider struct {
	version  string
	layout   *expression.Layout
	personas []string
	rules    *rules.Set
	metadata *schema.Schema
	budgets  []*budget.Budget
	// budgetsReadPersona tells whether a budget reads persona, decoded then per request.
	budgetsReadPersona bool
	// routes holds, by rule order, what each rule renders.
	routes   []Route
	fallback Route
}

// Route is what one rule (or the default persona) renders.
type Route struct {
	// Persona is the id of the template rendered; empty for an overlay, which picks none.
	Persona string
	Program *persona.Program
}

// Parts are the compiled and linked pieces of one configuration that a Decider decides with.
type Parts struct {
	// Version identifies the configuration (explanations name it).
	Version string
	Layout  *expression.Layout
	// Personas lists the template ids.
	Personas []string
	Rules    *rules.Set
	Metadata *schema.Schema
	Budgets  []*budget.Budget
	// Routes holds, by rule order, what each rule renders; Fallback what the default persona
	// renders.
	Routes   []Route
	Fallback Route
}

// New returns the Decider of a loaded configuration.
func New(p Parts) *Decider {
	return &Decider{
		version:            p.Version,
		layout:             p.Layout,
		personas:           slices.Sorted(slices.Values(p.Personas)),
		rules:              p.Rules,
		metadata:           p.Metadata,
		budgets:            p.Budgets,
		budgetsReadPersona: budget.ReadsPersona(p.Budgets),
		routes:             p.Routes,
		fallback:           p.Fallback,
	}
}

// Result is the outcome of routing one request.
type Result struct {
	// Persona is the id of the template rendered.
	Persona string
	// Rule is the rule that matched, or nil for the default persona.
	Rule *rules.Rule
	// Overlays lists the overlay rules applied over the persona, in the order applied.
	Overlays []*rules.Rule
	// Body is the session-token request sent to Anam, JSON; nil when Err is not. Release gives
	// its buffer back.
	Body *persona.Body
	// Err is a rendering failure: a placeholder that failed, or gave a value the catalogue
	// refuses (*persona.RenderError names the field).
	Err error
	// Trace lists the rules tried, when asked for.
	Trace []rules.Step
	// Failed lists rules whose `when` failed at run time.
	Failed []rules.Step
}

// Release gives the rendered body's buffer back for reuse; Body must not be used afterwards.
// A Result that is not released is collected as usual.
func (r *Result) Release() {
	r.Body.Release()
	r.Body = nil
}

// Request returns the rendered session-token request, nil when rendering failed.
func (r *Result) Request() []byte {
	if r.Body == nil {
		return nil
	}
	return r.Body.Bytes()
}

// Reason is "rule" when a rule matched, "default" otherwise.
func (r *Result) Reason() string {
	if r.Rule == nil {
		return "default"
	}
	return "rule"
}

// Decide decides which persona serves in and renders it. With trace, every rule tried is
// recorded.
func (d *Decider) Decide(in expression.Input, trace bool) Result {
	ev := expression.Acquire(in, d.layout)
	defer ev.Release()
	choice := d.rules.Decide(ev, in.Context, trace)
	rt := d.fallback
	if choice.Rule != nil {
		rt = d.routes[choice.Rule.Order]
	}
	if rt.Program.Stateful {
		choice.Overlays = nil // overlays leave a persona saved in Anam Lab as it is
	}
	body, err := rt.Program.Render(ev)
	if err == nil && len(choice.Overlays) > 0 {
		body, err = d.overlay(in, body, choice.Overlays)
	}
	return Result{Persona: rt.Persona, Rule: choice.Rule, Overlays: choice.Overlays, Body: body, Err: err, Trace: choice.Trace, Failed: choice.Failed}
}

// Metadata is the declared metadata schema (it may declare nothing).
func (d *Decider) Metadata() *schema.Schema { return d.metadata }

// PersonaIDs lists the template ids, sorted. The slice must not be modified.
func (d *Decider) PersonaIDs() []string { return d.personas }

// DefaultPersona is the id of the persona that serves when no rule matches.
func (d *Decider) DefaultPersona() string { return d.fallback.Persona }

// Rules lists the rules in decision order. The slice must not be modified.
func (d *Decider) Rules() []*rules.Rule { return d.rules.Rules() }

// Candidates lists, in decision order, the rules tried for a request of context: those the
// context index does not rule out.
func (d *Decider) Candidates(context string) []*rules.Rule { return d.rules.Candidates(context) }

// Contexts lists, sorted, the contexts some rule is restricted to.
func (d *Decider) Contexts() []string { return d.rules.Contexts() }

// Unrestricted lists, in decision order, the rules whose `when` names no context.
func (d *Decider) Unrestricted() []*rules.Rule { return d.rules.Unrestricted() }

// overlay applies overlay rules, in order, over a rendered request: each renders its set with
// `persona` bound to the personaConfig rendered so far, and its fields merge deeply over the
// request (null removes one). The result is checked against the catalogue as a whole, as the
// mix of two rules' fields was never checked at load.
func (d *Decider) overlay(in expression.Input, body *persona.Body, overlays []*rules.Rule) (*persona.Body, error) {
	var request map[string]any
	err := json.Unmarshal(body.Bytes(), &request)
	body.Release()
	if err != nil {
		return nil, fmt.Errorf("decoding the rendered request: %w", err)
	}
	for _, r := range overlays {
		pc, _ := request["personaConfig"].(map[string]any)
		in.Persona = pc
		ev := expression.Acquire(in, d.layout)
		patch, err := d.routes[r.Order].Program.Render(ev)
		ev.Release()
		if err != nil {
			return nil, fmt.Errorf("overlay %q: %w", r.Name, err)
		}
		var fields map[string]any
		err = json.Unmarshal(patch.Bytes(), &fields)
		patch.Release()
		if err != nil {
			return nil, fmt.Errorf("overlay %q: decoding its fields: %w", r.Name, err)
		}
		mergeInto(request, fields)
	}
	// Tool parameters were checked when the configuration loaded, overlays over every route
	// included; what is left to check is how the fields combine.
	if problems := catalogue.ValidateRequest(request, nil); len(problems) > 0 {
		names := make([]string, len(overlays))
		for i, r := range overlays {
			names[i] = r.Name
		}
		return nil, &persona.RenderError{Field: problems[0].At, Err: fmt.Errorf("%s (with overlays %s)", problems[0].Msg, strings.Join(names, ", "))}
	}
	out, err := json.Marshal(request)
	if err != nil {
		return nil, err
	}
	return persona.BodyOf(out), nil
}

// mergeInto merges over into dst deeply: mappings key by key, anything else replaced, null
// removing the key.
func mergeInto(dst, over map[string]any) {
	for k, v := range over {
		switch v := v.(type) {
		case nil:
			delete(dst, k)
		case map[string]any:
			if d, ok := dst[k].(map[string]any); ok {
				mergeInto(d, v)
				continue
			}
			dst[k] = v
		default:
			dst[k] = v
		}
	}
}

// Budgets lists the budgets of every rules file.
func (d *Decider) Budgets() []*budget.Budget { return d.budgets }

// Claims returns the budgets that apply to a decided request, with the key each is spent
// under: fallback (the client address) stands for the user where the request has no user id.
// Their expressions see the request, rule (the rule that chose the persona, "" for the
// default) and persona (the rendered persona config). Budgets whose expressions fail are
// returned in failed, and do not apply.
func (d *Decider) Claims(in expression.Input, res *Result, fallback string, now time.Time) (claims []budget.Claim, failed []error) {
	if len(d.budgets) == 0 {
		return nil, nil
	}
	if res.Rule != nil {
		in.Rule = res.Rule.Name
	}
	if d.budgetsReadPersona && res.Body != nil {
		var request struct {
			PersonaConfig map[string]any `json:"personaConfig"`
		}
		_ = json.Unmarshal(res.Request(), &request) // rendered by us
		in.Persona = request.PersonaConfig
	}
	userID, _ := in.User["id"].(string)
	ev := expression.Acquire(in, d.layout)
	defer ev.Release()
	return budget.Claims(d.budgets, ev, userID, fallback, now)
}

// SessionSeconds is the session length a rendered request asks for: its
// maxSessionLengthSeconds, or def when it sets none.
func (r *Result) SessionSeconds(def int) int {
	var request struct {
		PersonaConfig struct {
			Max int `json:"maxSessionLengthSeconds"`
		} `json:"personaConfig"`
	}
	if r.Body == nil || json.Unmarshal(r.Request(), &request) != nil || request.PersonaConfig.Max <= 0 {
		return def
	}
	return request.PersonaConfig.Max
}

// Clamp lowers the rendered request's maxSessionLengthSeconds to seconds, so that the session
// ends when the budget does.
func (r *Result) Clamp(seconds int) error {
	var request map[string]any
	if err := json.Unmarshal(r.Request(), &request); err != nil {
		return err
	}
	pc, ok := request["personaConfig"].(map[string]any)
	if !ok {
		return fmt.Errorf("the rendered request has no personaConfig")
	}
	if _, saved := pc["personaId"]; saved {
		return nil // a persona saved in Anam Lab takes no other field: its length is Anam's
	}
	pc["maxSessionLengthSeconds"] = seconds
	out, err := json.Marshal(request)
	if err != nil {
		return err
	}
	r.Body.Release()
	r.Body = persona.BodyOf(out)
	return nil
}
