package source

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

var (
	yamlLine      = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	unknownAnchor = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)
	// entry matches a line that starts a mapping key or a list item.
	entry = regexp.MustCompile(`^(- |-$|[^\s#'"{}\[\],&*!|>%@` + "`" + `][^#]*?:(\s|$))`)
	// keyValue matches "key: value" with an unquoted value.
	keyValue = regexp.MustCompile(`^(- )?([^\s#'"{}\[\],&*!|>%@` + "`" + `:][^:#]*): +([^\s'"|>{\[&*!].*)$`)
	// noSpace matches a key written without the space after its colon (key:value).
	noSpace = regexp.MustCompile(`^(- )?([\w.-]+):([^\s:/].*)$`)
)

// parserErrors are yaml.v3's messages from its parser rather than its scanner. For those
// yaml.v3 names the line before the one it means (it counts them from 0), and the line of the
// block the mistake is in rather than the mistake's own.
var parserErrors = []string{
	"did not find expected <document start>",
	"did not find expected node content",
	"did not find expected '-' indicator",
	"did not find expected key",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"found undefined tag handle",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found duplicate %TAG directive",
}

// syntaxError turns yaml.v3's error for data into one error at the mistake. yaml.v3 names the
// line where its parser noticed, often lines below the mistake (an unclosed quote runs on to the
// end of the file), with no column. So the text is scanned first for the mistakes that are
// easy to recognise — an unclosed quote or bracket, a tab that indents, text after a closing
// quote — and reported where they begin; other errors keep yaml.v3's words, on the first line
// at which the file stops being valid YAML, with what they usually mean in plain words.
func syntaxError(path string, data []byte, err error) *Error {
	text := string(data)
	lines := strings.Split(text, "\n")
	sc := scanSyntax(lines)
	if p := sc.problem; p != nil {
		return Errorf(Pos{Path: path, Line: p.line, Col: p.col}, "YAML syntax error: %s", p.msg)
	}
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	if m := unknownAnchor.FindStringSubmatch(msg); m != nil {
		if l, c, ok := findAlias(lines, m[1]); ok {
			return Errorf(Pos{Path: path, Line: l, Col: c}, "YAML syntax error: %s (*%s names no anchor &%s above it)", msg, m[1], m[1])
		}
	}
	for _, p := range parserErrors {
		if strings.HasPrefix(msg, p) {
			line = firstInvalidLine(lines, sc.clean, line+1)
			break
		}
	}
	line = min(max(line, 1), len(lines))
	return Errorf(Pos{Path: path, Line: line, Col: firstColumn(lines, line)}, "YAML syntax error: %s%s", msg, explain(msg, lines, line))
}

func firstColumn(lines []string, line int) int {
	if line < 1 || line > len(lines) {
		return 1
	}
	text := lines[line-1]
	return utf8.RuneCountInString(text) - utf8.RuneCountInString(strings.TrimLeft(text, " \t")) + 1
}

// firstInvalidLine returns the first line whose text, with the lines above it, is no longer
// valid YAML: the line a parser error means. It tries only ends of lines at which no quote
// or bracket is open, where cutting the file changes nothing above the cut, and returns
// fallback when none fails.
func firstInvalidLine(lines []string, clean []bool, fallback int) int {
	var cuts []int
	for k := 1; k <= len(lines); k++ {
		if k >= len(clean) || clean[k] {
			cuts = append(cuts, k)
		}
	}
	fails := func(k int) bool {
		var n yaml.Node
		return yaml.Unmarshal([]byte(strings.Join(lines[:k], "\n")), &n) != nil
	}
	i := sort.Search(len(cuts), func(i int) bool { return fails(cuts[i]) })
	if i == len(cuts) {
		return fallback
	}
	return cuts[i]
}

func findAlias(lines []string, name string) (line, col int, ok bool) {
	for i, text := range lines {
		for j := 0; j < len(text); j++ {
			k := strings.Index(text[j:], "*"+name)
			if k < 0 {
				break
			}
			j += k
			end := j + 1 + len(name)
			if end == len(text) || strings.IndexByte(" ,]}\t\r", text[end]) >= 0 {
				return i + 1, utf8.RuneCountInString(text[:j]) + 1, true
			}
		}
	}
	return 0, 0, false
}

// explain says in plain words what yaml.v3's message msg usually means on line.
func explain(msg string, lines []string, line int) string {
	text := strings.TrimRight(lines[line-1], "\r")
	trimmed := strings.TrimLeft(text, " ")
	switch {
	case strings.HasPrefix(msg, "mapping values are not allowed"):
		if p, ok := previousEntry(lines, line); ok && indentOf(text) > indentOf(lines[p-1]) {
			if m := keyValue.FindStringSubmatch(strings.TrimSpace(lines[p-1])); m != nil {
				return fmt.Sprintf(" (this line is indented more than %q on line %d, so it reads as more of that key's value; indent it as much as the key it belongs with)", m[2], p)
			}
		}
		if m := keyValue.FindStringSubmatch(trimmed); m != nil && !strings.ContainsAny(m[3], `"\`) {
			return fmt.Sprintf(` (a ": " inside an unquoted value starts a new key; put the whole value in quotes: %s%s: "%s")`, m[1], m[2], strings.TrimRight(m[3], " "))
		}
		return ` (a ": " inside an unquoted value starts a new key; put the whole value in quotes)`
	case strings.HasPrefix(msg, "could not find expected ':'"):
		if m := noSpace.FindStringSubmatch(trimmed); m != nil {
			return fmt.Sprintf(` (a key needs a space after its colon: %s%s: %s)`, m[1], m[2], m[3])
		}
		return ` (each line of a mapping is "key: value", and this one has no ": ")`
	case strings.HasPrefix(msg, "did not find expected key"):
		if strings.HasPrefix(trimmed, "-") {
			return ` (a list item "- " cannot sit among the keys of a mapping at the same indentation; put the list under a key and indent it)`
		}
		return ` (this line does not line up with the keys above it; indent it as much as the keys it belongs with)`
	case strings.HasPrefix(msg, "did not find expected '-' indicator"):
		return ` (a key cannot sit among the "- " items of a list at the same indentation; indent it under its item, or line it up with the key that holds the list)`
	case strings.HasPrefix(msg, "found character that cannot start any token"),
		strings.HasPrefix(msg, "did not find expected node content"):
		return " (a value cannot start with @, ` or %; put it in quotes)"
	}
	return ""
}

// previousEntry returns the line above line that holds something other than blanks and
// comments.
func previousEntry(lines []string, line int) (int, bool) {
	for p := line - 1; p >= 1; p-- {
		t := strings.TrimSpace(lines[p-1])
		if t != "" && !strings.HasPrefix(t, "#") {
			return p, true
		}
	}
	return 0, false
}

func indentOf(text string) int { return len(text) - len(strings.TrimLeft(text, " ")) }

type syntaxProblem struct {
	line, col int
	msg       string
}

// mark is where an opening quote or bracket is: 1-based line and column, and the column of
// the key or list item it belongs to (0-based), which the lines it runs on to must be
// indented past.
type mark struct {
	ch        byte
	line, col int
	owner     int
}

type scanMode int

const (
	// modeNode expects a value or key to start.
	modeNode scanMode = iota
	// modePlain is inside an unquoted value.
	modePlain
	// modeQuote is inside a quoted value.
	modeQuote
	// modeAfter follows a quoted value, a bracketed collection or an alias.
	modeAfter
)

// syntaxScan reads YAML text just well enough to find where quotes, brackets, block scalars
// and unquoted values begin and end, following YAML's rules: a quote starts a quoted value only
// where a value starts, # starts a comment only after a blank, and the lines of a block scalar
// (| or >) are text.
type syntaxScan struct {
	lines   []string
	problem *syntaxProblem
	// clean[k] tells whether no quote or bracket is open after the first k lines.
	clean []bool

	ln   int // 0-based
	text string
	i    int
	mode scanMode
	// owner is the column of the key or list item the next value belongs to.
	owner int
	// start is the column where the current plain value, quoted value or collection began.
	start      int
	afterQuote bool
	quote      mark
	// closedAt is the column of the quote that closed the last quoted value.
	closedAt int
	flow     []mark
	// plainOwner is the owner of an unquoted value that reached the end of its line, and may
	// go on on the next, more indented lines; -2 when there is none.
	plainOwner int
	// blockOwner is the owner of a block scalar whose lines follow; -2 when there is none.
	blockOwner  int
	blockIndent int
}

func scanSyntax(lines []string) *syntaxScan {
	s := &syntaxScan{lines: lines, plainOwner: -2, blockOwner: -2}
	for s.ln = range lines {
		s.clean = append(s.clean, s.mode != modeQuote && len(s.flow) == 0)
		s.scanLine(strings.TrimRight(lines[s.ln], "\r"))
		if s.problem != nil {
			return s
		}
	}
	s.clean = append(s.clean, s.mode != modeQuote && len(s.flow) == 0)
	switch {
	case s.mode == modeQuote:
		s.unclosedQuote("the end of the file")
	case len(s.flow) > 0:
		s.unclosedFlow("the end of the file")
	}
	return s
}

func (s *syntaxScan) fail(line, col int, format string, args ...any) {
	s.problem = &syntaxProblem{line: line, col: col, msg: fmt.Sprintf(format, args...)}
}

func (s *syntaxScan) unclosedQuote(before string) {
	q := s.quote
	if q.ch == '"' {
		s.fail(q.line, q.col, `unclosed double quote opened here: expected a closing " before %s (inside double quotes a quote is written \")`, before)
		return
	}
	s.fail(q.line, q.col, `unclosed single quote opened here: expected a closing ' before %s (inside single quotes a quote is written '')`, before)
}

func (s *syntaxScan) unclosedFlow(before string) {
	b := s.flow[len(s.flow)-1]
	s.fail(b.line, b.col, "unclosed %c opened here: expected %c before %s", b.ch, closer(b.ch), before)
}

func closer(open byte) byte {
	if open == '{' {
		return '}'
	}
	return ']'
}

func (s *syntaxScan) col(i int) int { return utf8.RuneCountInString(s.text[:i]) + 1 }

func (s *syntaxScan) scanLine(text string) {
	s.text, s.i = text, 0
	content := strings.TrimLeft(text, " \t")
	if content == "" {
		return
	}
	indent := indentOf(text)
	if s.blockOwner > -2 {
		if indent > s.blockOwner && (s.blockIndent < 0 || indent >= s.blockIndent) {
			if s.blockIndent < 0 {
				s.blockIndent = indent
			}
			return
		}
		s.blockOwner = -2
	}
	before := fmt.Sprintf("line %d", s.ln+1)
	switch {
	case s.mode == modeQuote:
		owner := s.quote.owner
		if len(s.flow) > 0 {
			owner = s.flow[0].owner
		}
		if indent <= owner && entry.MatchString(text[indent:]) {
			s.unclosedQuote(before)
			return
		}
	case len(s.flow) > 0:
		if indent <= s.flow[0].owner && entry.MatchString(text[indent:]) {
			s.unclosedFlow(before)
			return
		}
	default:
		if text[indent] == '\t' {
			s.fail(s.ln+1, s.col(indent), "a tab character indents this line; YAML indents with spaces")
			return
		}
		if s.plainOwner > -2 && indent > s.plainOwner && content[0] != '#' {
			s.mode = modePlain
		} else {
			s.mode, s.owner = modeNode, indent
		}
		s.plainOwner = -2
		s.i = indent
	}
	for s.i < len(s.text) && s.problem == nil {
		switch s.mode {
		case modeQuote:
			s.quoted()
		case modeNode:
			s.node()
		case modePlain:
			s.plain()
		case modeAfter:
			s.after()
		}
	}
	if s.mode == modePlain && len(s.flow) == 0 {
		s.plainOwner = s.owner
	}
}

// blankAt tells whether the character at i is a blank or the end of the line.
func (s *syntaxScan) blankAt(i int) bool {
	return i >= len(s.text) || s.text[i] == ' ' || s.text[i] == '\t'
}

func (s *syntaxScan) comment() bool {
	return s.text[s.i] == '#' && (s.i == 0 || s.text[s.i-1] == ' ' || s.text[s.i-1] == '\t')
}

func (s *syntaxScan) node() {
	c := s.text[s.i]
	inFlow := len(s.flow) > 0
	switch {
	case c == ' ' || c == '\t':
		s.i++
	case s.comment():
		s.i = len(s.text)
	case (c == '-' || c == '?' || c == ':') && !inFlow && s.blankAt(s.i+1):
		s.owner = s.i
		s.i++
	case c == '"' || c == '\'':
		s.quote = mark{ch: c, line: s.ln + 1, col: s.col(s.i), owner: s.owner}
		s.start = s.i
		s.mode = modeQuote
		s.i++
	case c == '{' || c == '[':
		s.flow = append(s.flow, mark{ch: c, line: s.ln + 1, col: s.col(s.i), owner: s.owner})
		s.i++
	case inFlow && (c == '}' || c == ']'):
		s.close()
	case inFlow && c == ',':
		s.i++
	case (c == '|' || c == '>') && !inFlow:
		s.blockOwner, s.blockIndent = s.owner, -1
		s.i = len(s.text)
	case c == '&' || c == '!':
		for s.i < len(s.text) && !s.blankAt(s.i) {
			s.i++
		}
	case c == '*':
		for s.i < len(s.text) && !s.blankAt(s.i) && strings.IndexByte(",[]{}", s.text[s.i]) < 0 {
			s.i++
		}
		s.mode, s.afterQuote = modeAfter, false
	default:
		s.start = s.i
		s.mode = modePlain
		s.i++
	}
}

func (s *syntaxScan) plain() {
	c := s.text[s.i]
	inFlow := len(s.flow) > 0
	switch {
	case c == ':' && (s.blankAt(s.i+1) || inFlow && strings.IndexByte(",[]{}", s.text[s.i+1]) >= 0):
		s.owner = s.start
		s.mode = modeNode
		s.i++
	case s.comment():
		s.mode = modeNode
		s.i = len(s.text)
	case inFlow && c == ',':
		s.mode = modeNode
		s.i++
	case inFlow && (c == '}' || c == ']'):
		s.close()
	default:
		s.i++
	}
}

func (s *syntaxScan) quoted() {
	c := s.text[s.i]
	switch {
	case s.quote.ch == '"' && c == '\\':
		s.i += 2
	case s.quote.ch == '\'' && c == '\'' && s.i+1 < len(s.text) && s.text[s.i+1] == '\'':
		s.i += 2
	case c == s.quote.ch:
		s.mode, s.afterQuote = modeAfter, true
		s.closedAt = s.col(s.i)
		s.i++
	default:
		s.i++
	}
}

func (s *syntaxScan) after() {
	c := s.text[s.i]
	inFlow := len(s.flow) > 0
	switch {
	case c == ' ' || c == '\t':
		s.i++
	case s.comment():
		s.i = len(s.text)
	case c == ':' && (s.blankAt(s.i+1) || inFlow):
		s.owner = s.start
		s.mode = modeNode
		s.i++
	case inFlow && c == ',':
		s.mode = modeNode
		s.i++
	case inFlow && (c == '}' || c == ']'):
		s.close()
	case s.afterQuote:
		q := s.quote
		other := "single"
		if q.ch == '\'' {
			other = "double"
		}
		s.fail(q.line, q.col, "text after the closing %c of a quoted value (line %d, column %d): a value that starts with a quote ends at the next %c; to use quotes inside a value, put the whole value in %s quotes or leave it unquoted",
			q.ch, s.ln+1, s.closedAt, q.ch, other)
	default:
		// Something yaml.v3 explains better than this scan.
		s.i = len(s.text)
	}
}

// close handles a closing bracket in a collection.
func (s *syntaxScan) close() {
	c := s.text[s.i]
	top := s.flow[len(s.flow)-1]
	if closer(top.ch) != c {
		s.unclosedFlow(fmt.Sprintf("the %c on line %d, column %d", c, s.ln+1, s.col(s.i)))
		return
	}
	s.flow = s.flow[:len(s.flow)-1]
	s.start = s.i
	if len(s.flow) == 0 {
		s.start = top.col - 1
	}
	s.mode, s.afterQuote = modeAfter, false
	s.i++
}
