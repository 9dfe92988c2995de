package persona

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/google/uuid"
	"gopkg.in/yaml.v3"

	"github.com/persona-router/persona-router/internal/anam"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/source"
)

// textField indexes the string fields of a persona, all of which may hold placeholders.
type textField int

const (
	fieldName textField = iota
	fieldAvatarID
	fieldVoiceID
	fieldLLMID
	fieldSystemPrompt
	fieldLanguageCode
	fieldAvatarModel
	fieldPersonaID
	numTextFields
)

var textFieldNames = [numTextFields]string{
	"name", "avatarId", "voiceId", "llmId", "systemPrompt", "languageCode", "avatarModel", "personaId",
}

// FieldNames lists every field a persona (or a rule's `set`) may give, in documentation order.
var FieldNames = append(textFieldNames[:fieldPersonaID:fieldPersonaID],
	"maxSessionLengthSeconds", "skipGreeting", "personaId")

// setting is a non-string field value with where it was set.
type setting[T any] struct {
	value T
	pos   source.Pos
}

// Fields is a set of persona fields, each possibly unset. Templates have one, and so does a
// rule's `set`; the two are merged at load into what a rule renders.
type Fields struct {
	text                    [numTextFields]*Text
	maxSessionLengthSeconds *setting[int]
	skipGreeting            *setting[bool]
}

// ParseFields reads persona fields from mapping pairs, compiling placeholders with c.
func ParseFields(path string, pairs []source.Field, c *expression.Compiler) (Fields, source.Errors) {
	var f Fields
	var errs source.Errors
	for _, p := range pairs {
		switch p.Key {
		case "maxSessionLengthSeconds":
			v, err := source.Int(path, p.Value, p.Key)
			if err == nil && v <= 0 {
				err = source.Errorf(source.At(path, p.Value), "maxSessionLengthSeconds must be a positive number of seconds, got %d", v)
			}
			if err != nil {
				errs.Add(err)
				continue
			}
			f.maxSessionLengthSeconds = &setting[int]{v, source.At(path, p.Value)}
		case "skipGreeting":
			v, err := source.Bool(path, p.Value, p.Key)
			if err != nil {
				errs.Add(err)
				continue
			}
			f.skipGreeting = &setting[bool]{v, source.At(path, p.Value)}
		default:
			i := textFieldIndex(p.Key)
			if i < 0 {
				errs.Addf(source.At(path, p.KeyN), "unknown persona field %q", p.Key)
				continue
			}
			t, terrs := ParseText(path, p.Value, p.Key, c)
			if terrs != nil {
				errs.Add(terrs...)
				continue
			}
			if lit, ok := t.Literal(); ok {
				if msg := checkValue(i, lit); msg != "" {
					errs.Addf(source.At(path, p.Value), "%s", msg)
					continue
				}
			}
			f.text[i] = t
		}
	}
	return f, errs
}

func textFieldIndex(name string) textField {
	for i, n := range textFieldNames {
		if n == name {
			return textField(i)
		}
	}
	return -1
}

// brainType matches Anam's older brain-type constants, which Anam still takes as an llmId.
var (
	brainType    = regexp.MustCompile(`^[A-Z][A-Za-z0-9_]*$`)
	languageCode = regexp.MustCompile(`^[a-z]{2}$`)
)

// checkValue validates a literal or rendered field value; it returns what is wrong, or "".
func checkValue(f textField, v string) string {
	switch f {
	case fieldAvatarID, fieldVoiceID, fieldPersonaID:
		if !isUUID(v) {
			return fmt.Sprintf("%s must be a UUID (like 30fa96d0-26c4-4e55-94a0-517025942e18), got %q", textFieldNames[f], v)
		}
	case fieldLLMID:
		if v != "" && !isUUID(v) && !brainType.MatchString(v) {
			return fmt.Sprintf("llmId must be a UUID or one of Anam's brain-type constants (like CUSTOMER_CLIENT_V1), got %q", v)
		}
	case fieldLanguageCode:
		if v != "" && !languageCode.MatchString(v) {
			return fmt.Sprintf("languageCode must be an ISO 639-1 code of two lower-case letters (like en), got %q", v)
		}
	}
	return ""
}

// isUUID accepts only the canonical 36-character form, which is what Anam takes.
func isUUID(s string) bool {
	return len(s) == 36 && uuid.Validate(s) == nil
}

// Merge returns base with every field that over sets replaced by over's.
func Merge(base, over Fields) Fields {
	out := base
	for i, t := range over.text {
		if t != nil {
			out.text[i] = t
		}
	}
	if over.maxSessionLengthSeconds != nil {
		out.maxSessionLengthSeconds = over.maxSessionLengthSeconds
	}
	if over.skipGreeting != nil {
		out.skipGreeting = over.skipGreeting
	}
	return out
}

// stateful reports whether the fields select a persona saved in Anam Lab.
func (f *Fields) stateful() bool { return f.text[fieldPersonaID] != nil }

// set lists the fields that are set, except personaId, with their positions.
func (f *Fields) set() (names []string, at []source.Pos) {
	for i, t := range f.text {
		if t != nil && textField(i) != fieldPersonaID {
			names, at = append(names, textFieldNames[i]), append(at, t.Pos)
		}
	}
	if s := f.maxSessionLengthSeconds; s != nil {
		names, at = append(names, "maxSessionLengthSeconds"), append(at, s.pos)
	}
	if s := f.skipGreeting; s != nil {
		names, at = append(names, "skipGreeting"), append(at, s.pos)
	}
	return names, at
}

// Check validates merged, the fields a template or rule will render, where own are the fields
// that template or rule gives itself (not inherited); problems are reported at pos when no
// field position fits.
//
// In stateful mode Anam ignores every field but personaId, so a template or rule that gives
// both is a mistake worth reporting; fields inherited into a stateful persona are dropped.
func Check(own, merged Fields, pos source.Pos, who string) source.Errors {
	var errs source.Errors
	if merged.stateful() {
		names, at := own.set()
		for i, n := range names {
			errs.Addf(at[i], "%s sets %s, but the persona is stateful (personaId names a persona saved in Anam Lab) and Anam ignores %s then; remove one of them", who, n, n)
		}
		return errs
	}
	var missing []string
	for _, f := range []textField{fieldName, fieldAvatarID, fieldVoiceID} {
		if merged.text[f] == nil {
			missing = append(missing, textFieldNames[f])
		}
	}
	if len(missing) > 0 {
		errs.Addf(pos, "%s has no %s (required, set here or inherited through extends, unless personaId is set)", who, strings.Join(missing, ", "))
	}
	return errs
}

// MaxRenderedBytes bounds the text of one rendered persona, so that the body sent to Anam stays
// small whatever the placeholders give: 256 KiB is eight times the longest literal a persona may
// hold (source.MaxStringBytes), and far above any real system prompt.
const MaxRenderedBytes = 256 << 10

// RenderError is a template whose rendered value is invalid or whose placeholder failed.
type RenderError struct {
	Field string
	Err   error
}

func (e *RenderError) Error() string { return "rendering " + e.Field + ": " + e.Err.Error() }
func (e *RenderError) Unwrap() error { return e.Err }

// Render evaluates the fields for one request into what is sent to Anam. Rendered IDs are
// validated, so a placeholder that yields a bad ID is an error, never a silent pass.
func (f *Fields) Render(ev *expression.Evaluator) (anam.PersonaConfig, error) {
	var c anam.PersonaConfig
	if f.stateful() {
		v, err := f.render(ev, fieldPersonaID)
		c.PersonaID = v
		return c, err
	}
	var err error
	targets := [...]*string{
		fieldName: &c.Name, fieldAvatarID: &c.AvatarID, fieldVoiceID: &c.VoiceID, fieldLLMID: &c.LLMID,
		fieldSystemPrompt: &c.SystemPrompt, fieldLanguageCode: &c.LanguageCode, fieldAvatarModel: &c.AvatarModel,
	}
	size := 0
	for i, dst := range targets {
		if *dst, err = f.render(ev, textField(i)); err != nil {
			return anam.PersonaConfig{}, err
		}
		size += len(*dst)
	}
	if c.Name == "" {
		return anam.PersonaConfig{}, &RenderError{Field: "name", Err: fmt.Errorf("rendered empty (a name is required)")}
	}
	if size > MaxRenderedBytes {
		return anam.PersonaConfig{}, &RenderError{Field: "personaConfig", Err: fmt.Errorf("rendered to %d bytes of text, more than the %d KiB a request to Anam may carry", size, MaxRenderedBytes>>10)}
	}
	if s := f.maxSessionLengthSeconds; s != nil {
		c.MaxSessionLengthSeconds = s.value
	}
	if s := f.skipGreeting; s != nil {
		c.SkipGreeting = &s.value // shared with the immutable snapshot; nobody writes through it
	}
	return c, nil
}

func (f *Fields) render(ev *expression.Evaluator, i textField) (string, error) {
	t := f.text[i]
	if t == nil {
		return "", nil
	}
	if lit, ok := t.Literal(); ok {
		return lit, nil // validated at load
	}
	v, err := t.Render(ev)
	if err != nil {
		return "", &RenderError{Field: textFieldNames[i], Err: err}
	}
	if msg := checkValue(i, v); msg != "" {
		return "", &RenderError{Field: textFieldNames[i], Err: fmt.Errorf("%s", msg)}
	}
	return v, nil
}

// ParseSet reads the `set` mapping of a rule: persona fields that override the template's.
func ParseSet(path string, n *yaml.Node, c *expression.Compiler) (Fields, source.Errors) {
	pairs, errs := source.Mapping(path, n, "set", FieldNames)
	f, ferrs := ParseFields(path, pairs, c)
	return f, append(errs, ferrs...)
}
