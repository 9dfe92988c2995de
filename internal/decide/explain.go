package decide

import (
	"context"
	"encoding/json"
	"time"

	"github.com/persona-router/persona-router/internal/budget"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/schema"
)

// Explanation is a routing decision spelled out for people: what `persona-router explain` prints
// and `POST /admin/explain` answers.
type Explanation struct {
	Persona string `json:"persona"`
	// Rule is null when no rule matched.
	Rule *string `json:"rule"`
	// Reason is "rule" or "default".
	Reason string `json:"reason"`
	// Overlays lists the overlay rules applied, in order.
	Overlays []string `json:"overlays"`
	// PersonaConfig is the personaConfig that would be sent to Anam; null when rendering
	// failed.
	PersonaConfig json.RawMessage `json:"personaConfig"`
	// Request is the whole session-token request exactly as it would be sent: personaConfig,
	// clientLabel, sessionOptions and extra fields. Null when rendering failed.
	Request       json.RawMessage `json:"request"`
	ConfigVersion string          `json:"configVersion"`
	Trace         []TraceStep     `json:"trace"`
	// Error says why rendering failed.
	Error string `json:"error,omitempty"`
	// Hint says which context a rule is written for that the request's context may have
	// meant, when no rule is written for its own.
	Hint string `json:"hint,omitempty"`
	// Refused is the answer the token endpoint would give instead of a token; there is no
	// decision then.
	Refused *Refusal `json:"refused,omitempty"`
	// Budgets lists the budgets that apply to the request, with what they have left.
	Budgets []BudgetState `json:"budgets"`
}

// BudgetState is a budget that applies to a request: whose it is and what it has left (-1
// where it sets no limit; seconds of its minutes).
type BudgetState struct {
	Name      string      `json:"name"`
	Key       string      `json:"key"`
	Remaining budget.Left `json:"remaining"`
}

// ExplainBudgets fills in e's budgets: those that apply to in, with what store says they have
// left. fallback stands for the user's key when the request has no user id.
func (d *Decider) ExplainBudgets(ctx context.Context, e *Explanation, in expression.Input, store budget.Store, fallback string) error {
	e.Budgets = []BudgetState{}
	if e.Refused != nil || len(d.budgets) == 0 {
		return nil
	}
	res := d.Decide(in, false)
	defer res.Release()
	now := time.Now()
	claims, _ := d.Claims(in, &res, fallback, now)
	left, err := store.Remaining(ctx, now, claims)
	if err != nil {
		return err
	}
	for i, c := range claims {
		e.Budgets = append(e.Budgets, BudgetState{Name: c.Budget.Name, Key: c.Key, Remaining: left[i]})
	}
	return nil
}

// Refusal is a request the token endpoint refuses before deciding.
type Refusal struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Error  string `json:"error"`
}

// MarshalJSON writes a refused request's explanation without a decision: only refused and
// configVersion.
func (e Explanation) MarshalJSON() ([]byte, error) {
	type plain Explanation
	if e.Refused != nil {
		return json.Marshal(struct {
			Refused       *Refusal `json:"refused"`
			ConfigVersion string   `json:"configVersion"`
		}{e.Refused, e.ConfigVersion})
	}
	return json.Marshal(plain(e))
}

// TraceStep is one rule tried, or with all, skipped.
type TraceStep struct {
	Rule    string `json:"rule"`
	Matched bool   `json:"matched"`
	Error   string `json:"error,omitempty"`
	// Failed is the first top-level condition of the rule's `when` that was false.
	Failed string `json:"failed,omitempty"`
	// Buckets gives every bucket(key) of the rule's `when`: key → value.
	Buckets map[string]int `json:"buckets,omitempty"`
	// Skipped says why a rule was not tried: "context" when the context index left it out.
	Skipped string `json:"skipped,omitempty"`
}

// Refusal returns what the token endpoint would answer instead of deciding in: a context that
// is not an identifier (400), metadata beyond the bounds or breaking the schema (422); nil
// when it would decide.
func (d *Decider) Refusal(in expression.Input) *Refusal {
	if !schema.ValidContext(in.Context) {
		return &Refusal{Status: 400, Code: "invalid_request", Error: schema.ContextRule}
	}
	if err := d.metadata.Validate(in.Metadata); err != nil {
		return &Refusal{Status: 422, Code: "invalid_metadata", Error: err.Error()}
	}
	return nil
}

// Explain decides in as the token endpoint would, with a trace, and spells out the result:
// the refusal the endpoint would give, or the decision. With all, the trace also lists the
// rules the context index skipped.
func (d *Decider) Explain(in expression.Input, all bool) Explanation {
	if r := d.Refusal(in); r != nil {
		return Explanation{Refused: r, ConfigVersion: d.version}
	}
	res := d.Decide(in, true)
	e := Explanation{
		Hint:          d.rules.ContextHint(in.Context),
		Persona:       res.Persona,
		Reason:        res.Reason(),
		ConfigVersion: d.version,
		Trace:         make([]TraceStep, 0, len(res.Trace)),
	}
	if res.Rule != nil {
		e.Rule = &res.Rule.Name
	}
	e.Overlays = make([]string, len(res.Overlays))
	for i, o := range res.Overlays {
		e.Overlays[i] = o.Name
	}
	if res.Err != nil {
		e.Error = res.Err.Error()
		e.PersonaConfig, e.Request = json.RawMessage("null"), json.RawMessage("null")
	} else {
		var body struct {
			PersonaConfig json.RawMessage `json:"personaConfig"`
		}
		request := res.Request()
		_ = json.Unmarshal(request, &body) // rendered by us: always an object with personaConfig
		e.PersonaConfig, e.Request = body.PersonaConfig, request
	}
	for _, st := range res.Trace {
		step := TraceStep{Rule: st.Rule.Name, Matched: st.Matched}
		if st.Err != nil {
			step.Error = st.Err.Error()
		}
		why := st.Rule.Why(in)
		step.Buckets = why.Buckets
		if !st.Matched && st.Err == nil {
			step.Failed = why.Failed
		}
		e.Trace = append(e.Trace, step)
	}
	if all {
		for _, r := range d.rules.Skipped(in.Context) {
			e.Trace = append(e.Trace, TraceStep{Rule: r.Name, Skipped: "context"})
		}
	}
	return e
}
