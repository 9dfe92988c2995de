package config

import (
	"encoding/json"

	"github.com/persona-router/persona-router/internal/expression"
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
}

// TraceStep is one rule tried.
type TraceStep struct {
	Rule    string `json:"rule"`
	Matched bool   `json:"matched"`
	Error   string `json:"error,omitempty"`
}

// Explain resolves in with a trace and spells out the result.
func (s *Snapshot) Explain(in expression.Input) Explanation {
	res := s.Resolve(in, true)
	e := Explanation{
		Persona:       res.Persona,
		Reason:        res.Reason(),
		ConfigVersion: s.Version,
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
		e.Trace = append(e.Trace, step)
	}
	return e
}
