// Package catalogue describes Anam's session-token request as data: every field a persona can
// give, its type, its range or pattern, whether it is required and what excludes what.
//
// Everything that needs the shape reads it from here: the load checks and the rendering of
// personas, their inheritance, the JSON Schema editors use and the field table of
// docs/configuration.md. A field Anam ships later is one entry in PersonaConfig or Session.
package catalogue

import (
	"regexp"
	"slices"
)

// Kind is the JSON type of a field's value.
type Kind uint8

const (
	// String is a JSON string, possibly restricted by Format, Values, Pattern and lengths.
	String Kind = iota
	// Integer is a JSON number without a fractional part.
	Integer
	// Number is any JSON number.
	Number
	// Boolean is true or false.
	Boolean
	// Object has the members listed in Fields.
	Object
	// List holds values described by Items.
	List
	// Map has string keys of the author's choosing, each holding a value described by Items.
	Map
	// Schema is a JSON Schema object, checked with a JSON Schema validator.
	Schema
	// Any is any JSON value: the fields of `extra`, which the catalogue does not know.
	Any
)

var kindNames = [...]string{
	String: "string", Integer: "integer", Number: "number", Boolean: "boolean", Object: "object",
	List: "list", Map: "map", Schema: "JSON Schema", Any: "any",
}

func (k Kind) String() string { return kindNames[k] }

// Format restricts the text of a String beyond its pattern.
type Format uint8

const (
	// Text is any string.
	Text Format = iota
	// UUID is the canonical 36-character form of a UUID, which is what Anam takes.
	UUID
	// LLM is a UUID or one of Anam's brain-type constants (CUSTOMER_CLIENT_V1): Anam still
	// takes those as an llmId, and its list changes, so they are matched by pattern.
	LLM
	// URL is an absolute https:// URL, or http:// for localhost and loopback addresses only:
	// Anam's servers call it.
	URL
)

// Cond makes a field exist only when a sibling field (written literally) has one of Values.
type Cond struct {
	Key    string
	Values []string
}

// Field is one field of Anam's request.
type Field struct {
	Name string
	Kind Kind
	// Doc says what the field does, for people: the docs' field table and editors' hovers.
	Doc string
	// Required fields must be present once inheritance is applied (unless the object's Alone
	// member is present).
	Required bool
	Format   Format
	// Values lists the strings an enum takes.
	Values []string
	// Pattern constrains a string; Example shows a value that matches, for messages.
	Pattern *regexp.Regexp
	Example string
	// MinLen and MaxLen bound a string's characters or a list's items; 0 means no bound.
	MinLen, MaxLen int
	// Min and Max bound a number, inclusive; nil means no bound.
	Min, Max *float64
	// Default is what Anam (or persona-router) uses when the field is left out, for docs.
	Default string
	// Literal fields must be written as plain values, never placeholders: other fields depend
	// on them at load (a tool's type decides which fields it takes), or their members are
	// placed in the request one by one (session, extra).
	Literal bool
	// KeyPattern constrains the keys of a Map; KeyExample shows one that matches.
	KeyPattern *regexp.Regexp
	KeyExample string
	// Only makes the field belong only to objects whose sibling Only.Key has one of its values.
	Only *Cond
	// Fields are an Object's members, in the order they are documented and sent.
	Fields []*Field
	// Items describes the values of a List or a Map.
	Items *Field
	// OneOf names members of an Object of which exactly one must be present.
	OneOf []string
	// Together names members of an Object that are given all together or not at all.
	Together []string
	// Alone names a member of an Object that, when present, is sent alone: Anam ignores the
	// others (a stateful persona's personaId).
	Alone string
	// UniqueBy names the member that must differ between the objects of a List.
	UniqueBy string
}

// Member returns the member of an Object called name, or nil.
func (f *Field) Member(name string) *Field {
	for _, m := range f.Fields {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// Names lists the names of an Object's members, in order.
func (f *Field) Names() []string {
	names := make([]string, len(f.Fields))
	for i, m := range f.Fields {
		names[i] = m.Name
	}
	return names
}

// Applies tells whether member m belongs to an object whose literal string members are given by
// lit: a member with a condition belongs only when its condition's key has one of its values.
func (m *Field) Applies(lit func(key string) (string, bool)) bool {
	if m.Only == nil {
		return true
	}
	v, ok := lit(m.Only.Key)
	return ok && slices.Contains(m.Only.Values, v)
}

func num(v float64) *float64 { return &v }

var (
	brainType    = regexp.MustCompile(`^[A-Z][A-Za-z0-9_]*$`)
	languageCode = regexp.MustCompile(`^[a-z]{2}$`)
	toolName     = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	// headerName is an HTTP field name (RFC 9110 token); headerValue has no control
	// characters, so a value cannot end a header and start another.
	headerName  = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
	headerValue = regexp.MustCompile(`^[^\x00-\x08\x0a-\x1f\x7f]*$`)
)

// number is a Number field between lo and hi.
func number(name string, lo, hi float64, doc string) *Field {
	return &Field{Name: name, Kind: Number, Min: num(lo), Max: num(hi), Doc: doc}
}

// PersonaConfig is the `personaConfig` object of a session-token request: the fields of a
// persona file and of a rule's `set`.
var PersonaConfig = &Field{
	Name:  "personaConfig",
	Kind:  Object,
	Doc:   "What Anam is asked to show and say.",
	Alone: "personaId",
	Fields: []*Field{
		{Name: "name", Kind: String, Required: true, MinLen: 1, Doc: "The persona's name, shown in Anam's session logs."},
		{Name: "avatarId", Kind: String, Format: UUID, Required: true, Doc: "The avatar (face) to stream."},
		{Name: "voiceId", Kind: String, Format: UUID, Required: true, Doc: "The voice to speak with."},
		{Name: "llmId", Kind: String, Format: LLM, Doc: "The LLM that answers: a UUID, or a brain-type constant such as CUSTOMER_CLIENT_V1 (which turns Anam's LLM off)."},
		{Name: "systemPrompt", Kind: String, Doc: "Instructions for the LLM."},
		{Name: "languageCode", Kind: String, Pattern: languageCode, Example: "en", Doc: "ISO 639-1 code of the language spoken."},
		{Name: "maxSessionLengthSeconds", Kind: Integer, Min: num(1), Doc: "Session length cap in seconds; without it the plan's cap applies."},
		{Name: "avatarModel", Kind: String, MinLen: 1, Example: "cara-3", Doc: "The avatar model, such as cara-2, cara-3 or cara-4-latest."},
		{Name: "skipGreeting", Kind: Boolean, Doc: "Start without the persona's greeting."},
		{Name: "zeroDataRetention", Kind: Boolean, Doc: "Store no conversation content at Anam."},
		{Name: "enableAudioPassthrough", Kind: Boolean, Doc: "Render only the face; the audio comes from elsewhere."},
		{Name: "voiceDetectionOptions", Kind: Object, Doc: "When the persona decides the user has finished speaking.", Fields: []*Field{
			number("endOfSpeechSensitivity", 0, 1, "How readily a pause ends the user's turn."),
			number("silenceBeforeSkipTurnSeconds", 0, 900, "Silence after which the persona takes the turn."),
			number("silenceBeforeSessionEndSeconds", 0, 7200, "Silence after which the session ends."),
			number("silenceBeforeAutoEndTurnSeconds", 0.5, 10, "Silence after which the user's turn ends."),
			number("speechEnhancementLevel", 0, 1, "How strongly background noise is removed."),
		}},
		{Name: "voiceGenerationOptions", Kind: Object, Doc: "How the voice speaks; which options apply depends on the voice's provider (Cartesia: speed, volume, emotion; ElevenLabs: stability, similarityBoost, speed, style, useSpeakerBoost).", Fields: []*Field{
			{Name: "speed", Kind: Number, Doc: "Speaking speed."},
			{Name: "volume", Kind: Number, Doc: "Loudness (Cartesia)."},
			{Name: "stability", Kind: Number, Doc: "Voice stability (ElevenLabs)."},
			{Name: "similarityBoost", Kind: Number, Doc: "Closeness to the original voice (ElevenLabs)."},
			{Name: "style", Kind: Number, Doc: "Style exaggeration (ElevenLabs)."},
			{Name: "emotion", Kind: String, Doc: "Emotion of the voice (Cartesia)."},
			{Name: "useSpeakerBoost", Kind: Boolean, Doc: "Boost similarity to the speaker (ElevenLabs)."},
		}},
		{Name: "directorNotes", Kind: Object, Doc: "How a Cara 4 avatar acts: a preset style or a custom style prompt.", OneOf: []string{"presetStyle", "customStylePrompt"}, Fields: []*Field{
			{Name: "presetStyle", Kind: String, MinLen: 1, Doc: "One of Anam's preset acting styles."},
			{Name: "customStylePrompt", Kind: String, MinLen: 1, MaxLen: 2000, Doc: "The acting style, in words."},
			number("expressivity", 0, 1, "How expressive the face is."),
		}},
		{Name: "toolIds", Kind: List, Doc: "Tools saved in Anam (system tools such as end_call included).", Items: &Field{Name: "toolId", Kind: String, Format: UUID}},
		{Name: "tools", Kind: List, UniqueBy: "name", Doc: "Tools defined inline: client tools (the browser gets the call), webhooks (Anam's servers call a URL) and knowledge bases.", Items: Tool},
		{Name: "personaId", Kind: String, Format: UUID, Doc: "A persona saved in Anam Lab (stateful mode): sent alone, every other field is then left out."},
	},
}

var (
	serverOnly    = &Cond{Key: "type", Values: []string{"server"}}
	webhookOnly   = &Cond{Key: "subtype", Values: []string{"webhook"}}
	knowledgeOnly = &Cond{Key: "subtype", Values: []string{"knowledge"}}
)

// Tool is one inline tool definition of `personaConfig.tools`.
var Tool = &Field{
	Name: "tool",
	Kind: Object,
	Doc:  "A tool the persona's LLM can call.",
	Fields: []*Field{
		{Name: "type", Kind: String, Required: true, Literal: true, Values: []string{"client", "server"}, Doc: "client: the browser receives the call; server: Anam's servers handle it."},
		{Name: "subtype", Kind: String, Required: true, Literal: true, Only: serverOnly, Values: []string{"webhook", "knowledge"}, Doc: "For server tools: webhook (Anam calls url) or knowledge (Anam searches documents)."},
		{Name: "name", Kind: String, Required: true, Pattern: toolName, Example: "lookup_order", Doc: "What the LLM calls the tool: 1–64 characters of A-Z a-z 0-9 _ -, unique within a persona."},
		{Name: "description", Kind: String, Required: true, MinLen: 1, Doc: "When the LLM should use the tool."},
		{Name: "parameters", Kind: Schema, Doc: "The tool's arguments, as a JSON Schema object."},
		{Name: "url", Kind: String, Format: URL, Required: true, Only: webhookOnly, Example: "https://api.example.com/orders", Doc: "The webhook Anam's servers call: https, or http for localhost only."},
		{Name: "method", Kind: String, Only: webhookOnly, Values: []string{"GET", "POST", "PUT", "PATCH", "DELETE"}, Default: "POST", Doc: "The webhook's HTTP method."},
		{Name: "headers", Kind: Map, Only: webhookOnly, KeyPattern: headerName, KeyExample: "X-Shop-Id", Items: &Field{Name: "header", Kind: String, Pattern: headerValue, Example: "text without line breaks"}, Doc: "Headers sent with each webhook call: names are HTTP tokens, values have no control characters."},
		{Name: "awaitResponse", Kind: Boolean, Only: webhookOnly, Doc: "Wait for the webhook's answer before the persona goes on."},
		{Name: "disableInterruptions", Kind: Boolean, Only: webhookOnly, Doc: "Keep the user from interrupting while the webhook runs."},
		{Name: "documentFolderIds", Kind: List, Required: true, MinLen: 1, Only: knowledgeOnly, Items: &Field{Name: "documentFolderId", Kind: String, Format: UUID}, Doc: "The knowledge folders Anam searches."},
	},
}

// Session is the rest of a session-token request beside `personaConfig`: a persona file's
// `session:` section.
var Session = &Field{
	Name: "session",
	Kind: Object,
	Doc:  "The session-token request's own fields, beside personaConfig.",
	Fields: []*Field{
		{Name: "clientLabel", Kind: String, MaxLen: 128, Default: "persona-router/<persona>[/<rule>]", Doc: "Recorded on the session and searchable in Anam's sessions API."},
		{Name: "sessionOptions", Kind: Object, Doc: "Options of the session itself.", Together: []string{"videoWidth", "videoHeight"}, Fields: []*Field{
			{Name: "sessionReplay", Kind: Object, Doc: "Session replay recording.", Fields: []*Field{
				{Name: "enableSessionReplay", Kind: Boolean, Doc: "Record the session for replay in Anam Lab."},
			}},
			{Name: "videoWidth", Kind: Integer, Min: num(1), Doc: "Video width in pixels (with videoHeight)."},
			{Name: "videoHeight", Kind: Integer, Min: num(1), Doc: "Video height in pixels (with videoWidth)."},
		}},
		Extra("the session-token request"),
	},
	Literal: true,
}

// Request is the top level of a session-token request, as sent: what `session.extra` must not
// repeat.
var Request = &Field{
	Name:   "request",
	Kind:   Object,
	Fields: []*Field{PersonaConfig, Session.Member("clientLabel"), Session.Member("sessionOptions")},
}

// Extra is the `extra:` mapping of fields the catalogue does not know yet, sent into where as
// written.
func Extra(where string) *Field {
	return &Field{Name: "extra", Kind: Map, Literal: true, Items: &Field{Name: "value", Kind: Any},
		Doc: "Fields persona-router does not know yet, sent into " + where + " as written (placeholders allowed in strings); a field it knows is an error here."}
}

// PersonaFile is the grammar of a persona file: personaConfig's fields at the top level, and
// extends, session and extra.
var PersonaFile = &Field{
	Name: "persona file",
	Kind: Object,
	Fields: append(slices.Clone(PersonaConfig.Fields),
		&Field{Name: "extends", Kind: String, Literal: true, Doc: "The persona this one inherits from: its fields are merged deeply, this file's win, null removes one."},
		Session,
		Extra("personaConfig"),
	),
}

// Set is the grammar of a rule's `set`: a persona file without extends.
var Set = &Field{
	Name:   "set",
	Kind:   Object,
	Doc:    "Persona fields this rule changes, merged deeply over its persona's.",
	Fields: slices.DeleteFunc(slices.Clone(PersonaFile.Fields), func(f *Field) bool { return f.Name == "extends" }),
}
