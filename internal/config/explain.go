package config

import (
	"github.com/persona-router/persona-router/internal/anam"
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
	// PersonaConfig is exactly what would be sent to Anam; null when rendering failed.
	PersonaConfig *anam.PersonaConfig `json:"personaConfig"`
	ConfigVersion string              `json:"configVersion"`
	Trace         []TraceStep         `json:"trace"`
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
	if res.Err != nil {
		e.Error = res.Err.Error()
	} else {
		e.PersonaConfig = &res.Config
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
