// Package anam talks to Anam's session-token API: the request it takes, the client that calls
// it, and an in-process fake of it for the sandbox and for tests.
package anam

// PersonaConfig is the `personaConfig` object of a session-token request. Empty optional
// fields are left out of the JSON, as Anam expects.
type PersonaConfig struct {
	// PersonaID selects a persona saved in Anam Lab (stateful mode); Anam then ignores the
	// other fields, so none is sent with it.
	PersonaID               string `json:"personaId,omitempty"`
	Name                    string `json:"name,omitempty"`
	AvatarID                string `json:"avatarId,omitempty"`
	VoiceID                 string `json:"voiceId,omitempty"`
	LLMID                   string `json:"llmId,omitempty"`
	SystemPrompt            string `json:"systemPrompt,omitempty"`
	LanguageCode            string `json:"languageCode,omitempty"`
	MaxSessionLengthSeconds int    `json:"maxSessionLengthSeconds,omitempty"`
	AvatarModel             string `json:"avatarModel,omitempty"`
	SkipGreeting            *bool  `json:"skipGreeting,omitempty"`
}
