// Package source reads the YAML files that hold personas and rules and reports what is wrong
// with them as positioned diagnostics ("path:line:col: message").
//
// Files are decoded into yaml.Node trees and walked by hand rather than unmarshalled into
// structs, because only the node tree keeps the line and column of every key and value, and a
// product engineer editing YAML needs to be pointed at the exact spot.
package source

import (
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/agnivade/levenshtein"
	"gopkg.in/yaml.v3"
)

// Pos is a position in a file. Line and Col are 1-based.
type Pos struct {
	Path string
	Line int
	Col  int
}

// At returns the position of a YAML node in the file at path.
func At(path string, n *yaml.Node) Pos {
	return Pos{Path: path, Line: n.Line, Col: n.Column}
}

func (p Pos) String() string {
	return p.Path + ":" + strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Col)
}

// Error is one problem found in a file.
type Error struct {
	Pos Pos
	Msg string
	// Code names the kind of problem, for tools that read `check --format json`: one of the
	// Code* constants.
	Code string
}

// Codes of diagnostics. A problem gets the most specific code that fits; Coded gives the
// others the code of the part of the configuration they belong to.
const (
	CodeYAMLSyntax     = "yaml-syntax"
	CodeUnknownField   = "unknown-field"
	CodeLimit          = "limit"
	CodeFile           = "file"
	CodeExpression     = "expression"
	CodePersona        = "persona"
	CodeRule           = "rule"
	CodeMetadataSchema = "metadata-schema"
	CodeTestFailed     = "test-failed"
	CodeTestInvalid    = "test-invalid"
	CodeUncoveredRule  = "uncovered-rule"
	CodeConfiguration  = "configuration"
)

func coded(code string, e *Error) *Error {
	e.Code = code
	return e
}

// Coded gives code to every error of errs that has none yet, and returns errs.
func Coded(code string, errs Errors) Errors {
	for _, e := range errs {
		if e.Code == "" {
			e.Code = code
		}
	}
	return errs
}

// Error reads "path:line:col: message", or just the message for a problem that belongs to no
// file (a reload past its deadline).
func (e *Error) Error() string {
	if e.Pos == (Pos{}) {
		return e.Msg
	}
	return e.Pos.String() + ": " + e.Msg
}

// Errorf returns an Error at pos.
func Errorf(pos Pos, format string, args ...any) *Error {
	return &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// Errors collects every problem of a load, so that one run reports all of them.
type Errors []*Error

// Sort orders the errors by file and position, keeping the order of errors at one position.
func (l Errors) Sort() {
	slices.SortStableFunc(l, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Pos.Path, b.Pos.Path), cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Col, b.Pos.Col))
	})
}

// Cap keeps the first MaxErrors errors of a sorted list and ends it with one saying that
// the rest are left out.
func (l Errors) Cap() Errors {
	if len(l) <= MaxErrors {
		return l
	}
	first := l[MaxErrors].Pos
	return append(l[:MaxErrors:MaxErrors], Errorf(Pos{Path: filepath.Dir(first.Path), Line: 1, Col: 1},
		"too many errors: only the first %d are listed; fix them and load again to see the rest", MaxErrors))
}

// Add appends errs.
func (l *Errors) Add(errs ...*Error) { *l = append(*l, errs...) }

// Addf appends a new Error at pos.
func (l *Errors) Addf(pos Pos, format string, args ...any) {
	l.Add(Errorf(pos, format, args...))
}

// Err returns the list as an error, or nil when it is empty.
func (l Errors) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

func (l Errors) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Strings returns each error's text, for JSON answers and logs.
func (l Errors) Strings() []string {
	out := make([]string, len(l))
	for i, e := range l {
		out[i] = e.Error()
	}
	return out
}

// AsErrors returns the diagnostics inside err: the list itself when err is an Errors, or a
// single position-less entry otherwise.
func AsErrors(err error) Errors {
	var list Errors
	if errors.As(err, &list) {
		return list
	}
	var one *Error
	if errors.As(err, &one) {
		return Errors{one}
	}
	return Errors{{Msg: err.Error()}}
}

// Parse parses YAML text into its document node. A syntax error is reported where the mistake
// is, as syntaxError finds it, rather than where yaml.v3 noticed it.
//
// Before returning the tree, Parse measures it as it will be read, aliases expanded, and
// refuses a document over MaxNodes or MaxExpandedBytes, or with a value over MaxStringBytes:
// the callers walk the tree and follow aliases, and must never see a tree whose walk is
// unbounded.
func Parse(path string, data []byte) (*yaml.Node, Errors) {
	root, _, errs := ParseSize(path, data)
	return root, errs
}

// Size is what a document expands to when its aliases are followed.
type Size struct {
	// Nodes counts values, keys and list items.
	Nodes int
	// Bytes counts the text of the values and keys.
	Bytes int
}

// ParseSize is Parse that also returns the size of the document it accepts, for a loader that
// holds a whole configuration to MaxConfigNodes and MaxConfigExpandedBytes.
func ParseSize(path string, data []byte) (*yaml.Node, Size, Errors) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Size{}, Errors{coded(CodeYAMLSyntax, syntaxError(path, data, err))}
	}
	if len(doc.Content) == 0 {
		return nil, Size{}, nil
	}
	root := doc.Content[0]
	m := &meter{path: path, text: locator{data: data}}
	if m.node(root); m.errs != nil {
		return nil, Size{}, Coded(CodeLimit, m.errs)
	}
	return root, m.total, nil
}

// meter measures a document once, in document order. Anchored nodes remember their size, so
// every alias adds its anchor's size without walking it again and measuring stays linear in
// the file however the aliases nest. It stops at the first node that takes the document over
// a limit.
type meter struct {
	path    string
	total   Size
	aliased bool
	// anchors holds the size of every anchored node measured to its end. As an anchor always
	// comes before its aliases, an alias to an anchor not in it is inside that anchor.
	anchors map[*yaml.Node]Size
	errs    Errors
	over    bool
	// text finds each scalar in the file, for those Offset will have to re-read.
	text locator
}

func (m *meter) node(n *yaml.Node) {
	if n.Kind == yaml.AliasNode {
		m.alias(n)
		return
	}
	start := m.total
	m.total.Nodes++
	m.total.Bytes += len(n.Value)
	if n.Kind == yaml.ScalarNode {
		if len(n.Value) > MaxStringBytes {
			m.errs.Add(coded(CodeLimit, Errorf(At(m.path, n), "value is too long (%d bytes, limit %d bytes = %d KiB)", len(n.Value), MaxStringBytes, MaxStringBytes>>10)))
		}
		if off, ok := m.text.at(n.Line, n.Column); ok && !verbatim(n, m.text.data, off) {
			remember(n, scalarText{data: m.text.data, off: off, line: n.Line, col: n.Column})
		}
	}
	if m.checkTotal(n) {
		return
	}
	for _, c := range n.Content {
		if m.node(c); m.over {
			return
		}
	}
	if n.Anchor != "" {
		if m.anchors == nil {
			m.anchors = map[*yaml.Node]Size{}
		}
		m.anchors[n] = Size{m.total.Nodes - start.Nodes, m.total.Bytes - start.Bytes}
	}
}

func (m *meter) alias(n *yaml.Node) {
	target := n.Alias
	if target == nil {
		return // yaml.v3 refuses an alias to an unknown anchor while parsing
	}
	s, measured := m.anchors[target]
	if !measured {
		m.errs.Addf(At(m.path, n), "alias *%s is used inside its own anchor &%s, which makes the value endless", n.Value, target.Anchor)
		m.over = true
		return
	}
	m.aliased = true
	m.total.Nodes += s.Nodes
	m.total.Bytes += s.Bytes
	m.checkTotal(n)
}

// checkTotal reports, at n, a document that n takes over a limit, and stops the measuring.
func (m *meter) checkTotal(n *yaml.Node) bool {
	what := "too large"
	if m.aliased {
		what = "too large after expanding aliases"
	}
	switch {
	case m.total.Nodes > MaxNodes:
		m.errs.Addf(At(m.path, n), "%s (%d nodes, limit %d)", what, m.total.Nodes, MaxNodes)
	case m.total.Bytes > MaxExpandedBytes:
		m.errs.Addf(At(m.path, n), "%s (%d bytes of text, limit %d)", what, m.total.Bytes, MaxExpandedBytes)
	default:
		return false
	}
	m.over = true
	return true
}

// Field is one key/value pair of a mapping.
type Field struct {
	Key   string
	KeyN  *yaml.Node
	Value *yaml.Node
}

// Mapping returns the pairs of a mapping node in document order. It reports a node that is
// not a mapping, a duplicate key, and — when known is not nil — every key not in known,
// suggesting the closest known key.
func Mapping(path string, n *yaml.Node, what string, known []string) ([]Field, Errors) {
	var errs Errors
	n = resolveAlias(n)
	if n.Kind != yaml.MappingNode {
		errs.Addf(At(path, n), "%s must be a mapping, got %s", what, Describe(n))
		return nil, errs
	}
	fields := make([]Field, 0, len(n.Content)/2)
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			errs.Addf(At(path, k), "%s keys must be strings", what)
			continue
		}
		if k.Tag == "!!merge" {
			errs.Addf(At(path, k), "YAML merge keys (<<) are not supported: write the fields out (personas share fields through extends)")
			continue
		}
		if seen[k.Value] {
			errs.Addf(At(path, k), "duplicate key %q in %s", k.Value, what)
			continue
		}
		seen[k.Value] = true
		if known != nil && !slices.Contains(known, k.Value) {
			errs.Add(coded(CodeUnknownField, Errorf(At(path, k), "unknown field %q in %s%s (expected one of: %s)",
				k.Value, what, Suggest(k.Value, known), strings.Join(known, ", "))))
			continue
		}
		fields = append(fields, Field{Key: k.Value, KeyN: k, Value: v})
	}
	return fields, errs
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// Suggest returns ", did you mean "k"?" for the known word k closest to word: one that
// differs only in case (avatarID for avatarId), else the nearest by edit distance when it is
// near enough to be a typo (typoDistance). It returns "" when none is.
func Suggest(word string, known []string) string {
	for _, k := range known {
		if strings.EqualFold(k, word) {
			return ", did you mean " + strconv.Quote(k) + "?"
		}
	}
	best, bestDist := "", 0
	lower := strings.ToLower(word)
	for _, k := range known {
		d := levenshtein.ComputeDistance(lower, strings.ToLower(k))
		if d <= typoDistance(len([]rune(k))) && (best == "" || d < bestDist) {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return ", did you mean " + strconv.Quote(best) + "?"
}

// Misspelt tells whether the mapping n has a key that is a typo of key (and not key itself):
// the unknown-field error with did-you-mean then says what is wrong, and a "has no key" error
// would only repeat it, at a worse place.
func Misspelt(n *yaml.Node, key string) bool {
	n = resolveAlias(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i].Value; k != key && Suggest(k, []string{key}) != "" {
			return true
		}
	}
	return false
}

// typoDistance is how many edits a word of n characters may take from a known one and still be
// taken for a typo of it: one for short words, two (a swapped pair of letters) from four.
func typoDistance(n int) int {
	switch {
	case n < 4:
		return 1
	case n < 9:
		return 2
	}
	return n / 4
}

// Describe names the kind of a node for error messages.
func Describe(n *yaml.Node) string {
	n = resolveAlias(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean (" + n.Value + ")"
		case "!!int", "!!float":
			return "a number (" + n.Value + ")"
		case "!!timestamp":
			return "a date (" + n.Value + "; quote it to make it a string)"
		case "!!str":
			return "a string"
		}
		return "a value tagged " + n.ShortTag()
	}
	return "an empty document"
}

// String decodes a string scalar. Numbers and booleans are not accepted as strings, so that
// `name: 123` or `when: true` is reported rather than silently coerced.
func String(path string, n *yaml.Node, what string) (string, *Error) {
	n = resolveAlias(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return "", Errorf(At(path, n), "%s must be a string, got %s", what, Describe(n))
	}
	return n.Value, nil
}

// NonEmptyString decodes a string scalar that must not be empty.
func NonEmptyString(path string, n *yaml.Node, what string) (string, *Error) {
	s, err := String(path, n, what)
	if err == nil && s == "" {
		err = Errorf(At(path, n), "%s must not be empty", what)
	}
	return s, err
}

// Int decodes an integer scalar.
func Int(path string, n *yaml.Node, what string) (int, *Error) {
	n = resolveAlias(n)
	var v int
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		hint := ""
		if _, err := strconv.Atoi(strings.TrimSpace(n.Value)); err == nil && n.ShortTag() == "!!str" {
			hint = " (" + strconv.Quote(n.Value) + ": remove the quotes to make it a number)"
		}
		return 0, Errorf(At(path, n), "%s must be an integer, got %s%s", what, Describe(n), hint)
	}
	return v, nil
}

// Bool decodes a boolean scalar.
func Bool(path string, n *yaml.Node, what string) (bool, *Error) {
	n = resolveAlias(n)
	var v bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&v) != nil {
		hint := ""
		switch strings.ToLower(n.Value) {
		case "yes", "no", "on", "off", "y", "n", "true", "false":
			if n.ShortTag() == "!!str" {
				hint = " (" + strconv.Quote(n.Value) + ": write true or false, without quotes)"
			}
		}
		return false, Errorf(At(path, n), "%s must be true or false, got %s%s", what, Describe(n), hint)
	}
	return v, nil
}

// Sequence returns the items of a list node.
func Sequence(path string, n *yaml.Node, what string) ([]*yaml.Node, *Error) {
	n = resolveAlias(n)
	if n.Kind != yaml.SequenceNode {
		return nil, Errorf(At(path, n), "%s must be a list, got %s", what, Describe(n))
	}
	return n.Content, nil
}
