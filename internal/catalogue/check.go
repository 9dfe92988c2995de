package catalogue

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/persona-router/persona-router/internal/source"
)

// Problem is one thing wrong with a value. At is where, below the value checked: "" for the
// value itself, else a path such as "voiceDetectionOptions.endOfSpeechSensitivity" or
// "tools[1].url".
type Problem struct {
	At  string
	Msg string
}

func (p Problem) Error() string {
	if p.At == "" {
		return p.Msg
	}
	return p.At + ": " + p.Msg
}

// CheckScalar checks a string, number or boolean value of f: its type, range, pattern, format
// and length. It returns what is wrong, or "".
func (f *Field) CheckScalar(v any) string {
	switch f.Kind {
	case String:
		s, ok := v.(string)
		if !ok {
			return fmt.Sprintf("must be %s, got %s", f.Expect(), Describe(v))
		}
		return f.CheckString(s)
	case Integer, Number:
		n, ok := Numeric(v)
		if !ok || (f.Kind == Integer && (n != math.Trunc(n) || math.Abs(n) > MaxInteger)) {
			return fmt.Sprintf("must be %s, got %s", f.Expect(), Describe(v))
		}
		if (f.Min != nil && n < *f.Min) || (f.Max != nil && n > *f.Max) {
			return fmt.Sprintf("must be %s, got %s", f.Expect(), Describe(v))
		}
	case Boolean:
		if _, ok := v.(bool); !ok {
			return fmt.Sprintf("must be true or false, got %s", Describe(v))
		}
	}
	return ""
}

// CheckString checks a string value of a String field: its length, enum, pattern and format.
// It returns what is wrong, or "".
func (f *Field) CheckString(s string) string {
	bad := func() string { return fmt.Sprintf("must be %s, got %s", f.Expect(), Describe(s)) }
	n := len(s) // characters are counted only where a bound needs them
	if f.MaxLen > 0 || f.MinLen > 1 {
		n = utf8.RuneCountInString(s)
	}
	switch {
	case f.MinLen == 1 && n == 0:
		return "must not be empty"
	case f.MinLen > 0 && n < f.MinLen, f.MaxLen > 0 && n > f.MaxLen:
		return fmt.Sprintf("must be %s, got %d characters", f.lengthWords(), n)
	case f.Values != nil && !slices.Contains(f.Values, s):
		return bad() + source.Suggest(s, f.Values)
	case f.Pattern != nil && !f.Pattern.MatchString(s):
		return bad()
	}
	switch f.Format {
	case UUID:
		if !IsUUID(s) {
			return bad()
		}
	case LLM:
		if s != "" && !IsUUID(s) && !brainType.MatchString(s) {
			return bad()
		}
	case URL:
		if msg := checkURL(s); msg != "" {
			return msg
		}
	}
	return ""
}

// MaxInteger is the largest integer a JSON number holds exactly (2^53 - 1): the bound of every
// Integer field.
const MaxInteger = 1<<53 - 1

// CheckKey checks a key of a Map; it returns what is wrong, or "".
func (f *Field) CheckKey(k string) string {
	if f.KeyPattern != nil && !f.KeyPattern.MatchString(k) {
		if f.KeyPattern == headerName {
			return fmt.Sprintf("%q is not a header name (letters, digits and !#$%%&'*+.^_`|~- only, like %s)", k, f.KeyExample)
		}
		return fmt.Sprintf("%q does not match %s", k, f.KeyPattern)
	}
	return ""
}

// IsUUID accepts only the canonical 36-character form, which is what Anam takes.
func IsUUID(s string) bool {
	return len(s) == 36 && uuid.Validate(s) == nil
}

func checkURL(s string) string {
	if plainHTTPS(s) {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return fmt.Sprintf("must be an absolute URL (like https://api.example.com/orders), got %q", s)
	}
	switch u.Scheme {
	case "https":
		return ""
	case "http":
		if host := u.Hostname(); host == "localhost" || isLoopback(host) {
			return ""
		}
		return fmt.Sprintf("must use https:// (http:// is only for localhost, as Anam's servers call this URL over the internet), got %q", s)
	}
	return fmt.Sprintf("must be an https:// URL, got %q", s)
}

// plainHTTPS recognises, without parsing, the common https URL made only of a DNS host name,
// an optional port and path, query and fragment characters that need no escaping: url.Parse
// accepts every such URL. Anything else is left to url.Parse.
func plainHTTPS(s string) bool {
	const scheme = "https://"
	if len(s) <= len(scheme) || s[:len(scheme)] != scheme {
		return false
	}
	rest := s[len(scheme):]
	host := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		host = rest[:i]
	}
	if host == "" || host[0] == '.' || host[0] == '-' || host[0] == ':' {
		return false
	}
	colon := false
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c == ':':
			if colon {
				return false
			}
			colon = true
		case colon && (c < '0' || c > '9'):
			return false
		case !colon && !isAlnum(c) && c != '.' && c != '-':
			return false
		}
	}
	for i := len(host); i < len(rest); i++ {
		if c := rest[i]; !isAlnum(c) && !strings.ContainsRune("-._~/?#[]@!$&'()*+,;=:", rune(c)) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Numeric returns a JSON number's value: expressions give int and float64, YAML int and
// float64, JSON float64.
func Numeric(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case float64:
		return n, !math.IsNaN(n) && !math.IsInf(n, 0)
	}
	return 0, false
}

// Expect says in words what a value of f must be.
func (f *Field) Expect() string {
	switch f.Kind {
	case String:
		switch {
		case f.Values != nil:
			return "one of " + strings.Join(f.Values, ", ")
		case f.Format == UUID:
			return "a UUID (like 30fa96d0-26c4-4e55-94a0-517025942e18)"
		case f.Format == LLM:
			return "a UUID or one of Anam's brain-type constants (like CUSTOMER_CLIENT_V1)"
		case f.Format == URL:
			return "an https:// URL (like " + f.Example + ")"
		case f.Pattern == toolName:
			return "1–64 characters of A-Z, a-z, 0-9, _ and - (like " + f.Example + ")"
		case f.Pattern == languageCode:
			return "an ISO 639-1 code of two lower-case letters (like " + f.Example + ")"
		case f.Pattern == headerValue:
			return "a header value without control characters or line breaks"
		case f.Pattern != nil:
			return "a string matching " + f.Pattern.String()
		case f.MinLen > 0 || f.MaxLen > 0:
			return "a string of " + f.lengthWords()
		}
		return "a string"
	case Integer, Number:
		what := "a number"
		if f.Kind == Integer {
			what = "an integer"
		}
		switch {
		case f.Min != nil && f.Max != nil:
			return fmt.Sprintf("%s from %s to %s", what, fmtNum(*f.Min), fmtNum(*f.Max))
		case f.Min != nil && *f.Min == 1 && f.Kind == Integer:
			return "a positive integer"
		case f.Min != nil:
			return fmt.Sprintf("%s of at least %s", what, fmtNum(*f.Min))
		case f.Max != nil:
			return fmt.Sprintf("%s of at most %s", what, fmtNum(*f.Max))
		}
		return what
	case Boolean:
		return "true or false"
	case Object:
		if len(f.Fields) > 6 {
			return "a mapping"
		}
		return "a mapping of " + strings.Join(f.Names(), ", ")
	case List:
		if f.MinLen > 0 {
			return "a non-empty list"
		}
		return "a list"
	case Map:
		return "a mapping"
	case Schema:
		return "a JSON Schema object"
	}
	return "a value"
}

func (f *Field) lengthWords() string {
	switch {
	case f.MinLen == 1 && f.MaxLen == 0:
		return "at least 1 character"
	case f.MinLen > 0 && f.MaxLen > 0:
		return fmt.Sprintf("%d to %d characters", f.MinLen, f.MaxLen)
	case f.MaxLen > 0:
		return fmt.Sprintf("at most %d characters", f.MaxLen)
	}
	return fmt.Sprintf("at least %d characters", f.MinLen)
}

func fmtNum(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// Describe names a value for messages: strings quoted, numbers and booleans as written, and
// the kind of anything else.
func Describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		if utf8.RuneCountInString(v) > 60 {
			v = string([]rune(v)[:57]) + "..."
		}
		return strconv.Quote(v)
	case bool:
		return strconv.FormatBool(v)
	case int, int64, float64:
		n, _ := Numeric(v)
		return fmtNum(n)
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("a %T", v)
}

// Members is what CheckObject needs to know of an object: the members present, and the value
// of a member written as a literal string (for the members others depend on, like a tool's
// type).
type Members interface {
	Has(name string) bool
	Str(name string) (string, bool)
}

// CheckObject checks the members present in an object of f, by name: each belongs to it (with
// the object's other members), required ones are there, and its one-of and together rules hold.
// Each problem's At is the member at fault (the missing one for a required member), or "" for
// the object.
func (f *Field) CheckObject(o Members, present []string) []Problem {
	var out []Problem
	alone := f.Alone != "" && o.Has(f.Alone)
	for _, name := range present {
		m := f.Member(name)
		switch {
		case m == nil:
			out = append(out, Problem{name, fmt.Sprintf("unknown field %q%s (expected one of: %s)", name, source.Suggest(name, f.Names()), strings.Join(f.Names(), ", "))})
		case !f.applies(m, o):
			out = append(out, Problem{name, f.notFor(m, o)})
		case alone && name != f.Alone:
			out = append(out, Problem{name, fmt.Sprintf("%s is left out when %s is set: Anam then ignores it", name, f.Alone)})
		}
	}
	if alone {
		return out
	}
	for _, m := range f.Fields {
		if m.Required && !o.Has(m.Name) && f.applies(m, o) {
			msg := fmt.Sprintf("%s has no %s (required", f.Name, m.Name)
			if m.Only != nil {
				msg += fmt.Sprintf(" for a %s whose %s is %s", f.Name, m.Only.Key, strings.Join(m.Only.Values, " or "))
			}
			out = append(out, Problem{m.Name, msg + ")"})
		}
	}
	if f.OneOf != nil {
		var given []string
		for _, name := range f.OneOf {
			if o.Has(name) {
				given = append(given, name)
			}
		}
		if len(given) != 1 {
			got := "neither"
			if len(given) > 1 {
				got = "both"
			}
			out = append(out, Problem{"", fmt.Sprintf("needs exactly one of %s, got %s", strings.Join(f.OneOf, " or "), got)})
		}
	}
	if f.Together != nil {
		var missing []string
		for _, name := range f.Together {
			if !o.Has(name) {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 && len(missing) < len(f.Together) {
			out = append(out, Problem{"", fmt.Sprintf("%s go together: %s missing", strings.Join(f.Together, " and "), strings.Join(missing, ", "))})
		}
	}
	return out
}

// applies tells whether member m belongs to this object of f: its condition holds, and the
// member its condition reads belongs too (a client tool's subtype does not count).
func (f *Field) applies(m *Field, o Members) bool {
	if m.Only == nil {
		return true
	}
	if key := f.Member(m.Only.Key); key != nil && !f.applies(key, o) {
		return false
	}
	return m.Applies(o.Str)
}

// notFor says why member m does not belong to this object of f.
func (f *Field) notFor(m *Field, o Members) string {
	msg := fmt.Sprintf("%s is only for a %s whose %s is %s", m.Name, f.Name, m.Only.Key, strings.Join(m.Only.Values, " or "))
	if v, ok := o.Str(m.Only.Key); ok {
		return msg + fmt.Sprintf(" (this one's %s is %s)", m.Only.Key, v)
	}
	return msg + fmt.Sprintf(" (this one has no %s)", m.Only.Key)
}

// Validate checks a whole value of f, as a placeholder gave it or as decoded from JSON, and
// returns every problem with its path below the value. SchemaCheck, when not nil, checks a
// Schema value.
func (f *Field) Validate(v any, schemaCheck func(any) error) []Problem {
	var out []Problem
	f.validate(v, "", schemaCheck, &out)
	return out
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func (f *Field) validate(v any, path string, schemaCheck func(any) error, out *[]Problem) {
	bad := func(msg string) { *out = append(*out, Problem{path, msg}) }
	switch f.Kind {
	case String, Integer, Number, Boolean:
		if msg := f.CheckScalar(v); msg != "" {
			bad(msg)
		}
	case Any:
	case Schema:
		m, ok := v.(map[string]any)
		if !ok {
			bad(fmt.Sprintf("must be %s, got %s", f.Expect(), Describe(v)))
			return
		}
		if schemaCheck != nil {
			if err := schemaCheck(m); err != nil {
				bad(err.Error())
			}
		}
	case List:
		items, ok := v.([]any)
		if !ok {
			bad(fmt.Sprintf("must be %s, got %s", f.Expect(), Describe(v)))
			return
		}
		if f.MinLen > 0 && len(items) < f.MinLen {
			bad("must not be empty")
		}
		seen := make(map[string]int)
		for i, item := range items {
			p := fmt.Sprintf("%s[%d]", path, i)
			f.Items.validate(item, p, schemaCheck, out)
			if f.UniqueBy == "" {
				continue
			}
			if m, ok := item.(map[string]any); ok {
				if key, ok := m[f.UniqueBy].(string); ok {
					if j, dup := seen[key]; dup {
						*out = append(*out, Problem{p + "." + f.UniqueBy, fmt.Sprintf("%s %q is already used by %s[%d] (%s names must be unique)", f.UniqueBy, key, path, j, f.Items.Name)})
					}
					seen[key] = i
				}
			}
		}
	case Map, Object:
		m, ok := v.(map[string]any)
		if !ok {
			bad(fmt.Sprintf("must be %s, got %s", f.Expect(), Describe(v)))
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if f.Kind == Map {
			for _, k := range keys {
				if msg := f.CheckKey(k); msg != "" {
					*out = append(*out, Problem{join(path, k), msg})
				}
				f.Items.validate(m[k], join(path, k), schemaCheck, out)
			}
			return
		}
		for _, p := range f.CheckObject(valueMembers(m), keys) {
			p.At = join(path, p.At)
			*out = append(*out, p)
		}
		for _, k := range keys {
			if sub := f.Member(k); sub != nil {
				sub.validate(m[k], join(path, k), schemaCheck, out)
			}
		}
	}
}

// valueMembers is a decoded JSON object as Members.
type valueMembers map[string]any

func (m valueMembers) Has(name string) bool { _, ok := m[name]; return ok }
func (m valueMembers) Str(name string) (string, bool) {
	s, ok := m[name].(string)
	return s, ok
}

// ValidateRequest checks a whole session-token request as decoded JSON: the fields of
// personaConfig and the request's own fields (clientLabel, sessionOptions) the catalogue knows.
// Fields it does not know (extra) are let through. schemaCheck, when not nil, checks tool
// parameters. Each problem's At is its path from the request.
func ValidateRequest(req map[string]any, schemaCheck func(any) error) []Problem {
	pc, ok := req[PersonaConfig.Name].(map[string]any)
	if !ok {
		return []Problem{{"", "personaConfig is required"}}
	}
	var out []Problem
	for _, p := range PersonaConfig.Validate(known(PersonaConfig, pc), schemaCheck) {
		p.At = join(PersonaConfig.Name, p.At)
		out = append(out, p)
	}
	top := &Field{Name: "request", Kind: Object, Fields: Request.Fields[1:]}
	return append(out, top.Validate(known(top, req), schemaCheck)...)
}

// known keeps the members of m that f knows.
func known(f *Field, m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if f.Member(k) != nil {
			out[k] = v
		}
	}
	return out
}
