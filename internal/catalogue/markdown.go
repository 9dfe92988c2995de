package catalogue

import (
	"fmt"
	"slices"
	"strings"
)

// Markdown returns docs/configuration.md's table of every field of a persona file: one row a
// field, nested ones as paths (voiceDetectionOptions.endOfSpeechSensitivity, tools[].url,
// session.sessionOptions.videoWidth), with its type, its checks and what it does.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| field | type | checks | what it does |\n|---|---|---|---|\n")
	for _, m := range PersonaFile.Fields {
		rows(&b, PersonaFile, m, m.Name)
	}
	return b.String()
}

// rows writes the row of member m of parent at path, then those of its members.
func rows(b *strings.Builder, parent, m *Field, path string) {
	fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", path, typeText(m), cell(strings.Join(checks(parent, m), "; ")), cell(m.Doc))
	sub, prefix := m, path+"."
	if m.Kind == List && m.Items.Kind == Object {
		sub, prefix = m.Items, path+"[]."
	}
	if sub.Kind != Object {
		return
	}
	for _, f := range sub.Fields {
		rows(b, sub, f, prefix+f.Name)
	}
}

// cell escapes text for a table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// typeText names the type of f's values.
func typeText(f *Field) string {
	switch f.Kind {
	case String:
		switch f.Format {
		case UUID:
			return "UUID"
		case LLM:
			return "UUID or brain-type constant"
		case URL:
			return "URL"
		}
	case List:
		if f.Items.Kind == Object {
			return "list of " + f.Items.Name + "s"
		}
		return "list of " + typeText(f.Items) + "s"
	case Map:
		if f.Items.Kind == Any {
			return "mapping of any values"
		}
		return "mapping of " + typeText(f.Items) + "s"
	case Any:
		return "any value"
	}
	return f.Kind.String()
}

// checks lists in words what the load checks of member m of parent, beyond its type.
func checks(parent, m *Field) []string {
	var out []string
	if m.Only != nil {
		out = append(out, fmt.Sprintf("only for `%s: %s`", m.Only.Key, strings.Join(m.Only.Values, "` or `"+m.Only.Key+": ")))
	}
	switch {
	case m.Required && parent == PersonaFile:
		out = append(out, fmt.Sprintf("required (once `extends` is applied), unless `%s`", PersonaConfig.Alone))
	case m.Required:
		out = append(out, "required")
	}
	if parent == PersonaFile && m.Name == PersonaConfig.Alone {
		out = append(out, "sent alone: no other personaConfig field beside it")
	}
	switch {
	case m.Literal && (m.Kind == Object || m.Kind == Map):
		out = append(out, "a mapping written out (placeholders go inside it)")
	case m.Literal:
		out = append(out, "no placeholders")
	}
	if m.KeyPattern == headerName {
		out = append(out, "keys are HTTP header names (like `"+m.KeyExample+"`), values without line breaks")
	}
	if m.Values != nil {
		out = append(out, "one of `"+strings.Join(m.Values, "`, `")+"`")
	}
	if m.Pattern != nil {
		out = append(out, "matches `"+m.Pattern.String()+"`")
	}
	if m.Format == URL {
		out = append(out, "https://, or http:// for localhost only")
	}
	if s := lengths(m); s != "" {
		out = append(out, s)
	}
	if s := bounds(m); s != "" {
		out = append(out, s)
	}
	if m.Kind == Schema {
		out = append(out, "a valid JSON Schema (draft 2020-12) of `type: object`, nothing fetched")
	}
	if m.UniqueBy != "" {
		out = append(out, fmt.Sprintf("each %s's `%s` unique", m.Items.Name, m.UniqueBy))
	}
	if slices.Contains(parent.OneOf, m.Name) {
		out = append(out, "exactly one of `"+strings.Join(parent.OneOf, "`, `")+"`")
	}
	if slices.Contains(parent.Together, m.Name) {
		var others []string
		for _, o := range parent.Together {
			if o != m.Name {
				others = append(others, "`"+o+"`")
			}
		}
		out = append(out, "with "+strings.Join(others, ", "))
	}
	if m.Default != "" {
		out = append(out, "default `"+m.Default+"`")
	}
	return out
}

// lengths says how long a string or a list of f may be.
func lengths(f *Field) string {
	unit := "characters"
	if f.Kind == List {
		unit = "items"
	}
	switch {
	case f.MinLen > 0 && f.MaxLen > 0:
		return fmt.Sprintf("%d–%d %s", f.MinLen, f.MaxLen, unit)
	case f.MaxLen > 0:
		return fmt.Sprintf("at most %d %s", f.MaxLen, unit)
	case f.MinLen == 1:
		return "not empty"
	case f.MinLen > 0:
		return fmt.Sprintf("at least %d %s", f.MinLen, unit)
	}
	return ""
}

// bounds says the range of a number of f.
func bounds(f *Field) string {
	switch {
	case f.Min != nil && f.Max != nil:
		return fmtNum(*f.Min) + "–" + fmtNum(*f.Max)
	case f.Min != nil:
		return "≥ " + fmtNum(*f.Min)
	case f.Max != nil:
		return "≤ " + fmtNum(*f.Max)
	}
	return ""
}
