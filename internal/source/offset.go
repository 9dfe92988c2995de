package source

import (
	"bytes"
	"runtime"
	"strings"
	"sync"
	"unicode/utf8"
	"weak"

	"gopkg.in/yaml.v3"
)

// texts remembers, for every scalar that Parse returned whose value is not written verbatim on
// one line of its file (block scalars, values folded over several lines, quoted values with
// escapes), the file it was read from, so that Offset can re-read the value as written. A
// yaml.Node has no room for it, and Offset's callers hold only the node. The keys are weak and
// each entry is deleted once its node is collected, so the table keeps nothing alive: the
// snapshot a load builds does not keep the nodes, and a thousand reloads leave no trace.
var texts sync.Map // weak.Pointer[yaml.Node] → scalarText

type scalarText struct {
	data []byte
	// off is the byte offset of the node in data: its indicator (|, >) or opening quote, or
	// the first character of a plain value.
	off int
	// line and col are the node's position, 1-based, col counted in characters as yaml.v3
	// counts them.
	line, col int
}

func remember(n *yaml.Node, t scalarText) {
	key := weak.Make(n)
	texts.Store(key, t)
	runtime.AddCleanup(n, func(k weak.Pointer[yaml.Node]) { texts.Delete(k) }, key)
}

func recalled(n *yaml.Node) (scalarText, bool) {
	t, ok := texts.Load(weak.Make(n))
	if !ok {
		return scalarText{}, false
	}
	return t.(scalarText), true
}

// locator finds the byte offset of node positions in one file. Parse asks for positions in
// document order, which only moves forward, so it keeps its place and costs one pass over
// the file in all, however long its lines.
type locator struct {
	data           []byte
	line, col, off int // the place reached so far, 1-based line and column
	lineOff        int // byte offset of the start of line
}

func (l *locator) at(line, col int) (int, bool) {
	if l.line == 0 || line < l.line || (line == l.line && col < l.col) {
		l.line, l.col, l.off, l.lineOff = 1, 1, 0, 0
	}
	for l.line < line {
		i := bytes.IndexByte(l.data[l.off:], '\n')
		if i < 0 {
			return 0, false
		}
		l.off += i + 1
		l.line++
		l.col, l.lineOff = 1, l.off
	}
	for l.col < col {
		if l.off >= len(l.data) || l.data[l.off] == '\n' {
			return 0, false
		}
		_, size := utf8.DecodeRune(l.data[l.off:])
		l.off += size
		l.col++
	}
	return l.off, true
}

// verbatim tells whether the scalar n at byte offset off of data is written exactly as its
// value, on one line, so that the character at column c of the value is at column c of the
// line (after the opening quote of a quoted value).
func verbatim(n *yaml.Node, data []byte, off int) bool {
	if strings.Contains(n.Value, "\n") {
		return false
	}
	text := data[off:]
	switch n.Style {
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		if n.Style == yaml.DoubleQuotedStyle && strings.ContainsAny(n.Value, "\"\\") ||
			n.Style == yaml.SingleQuotedStyle && strings.Contains(n.Value, "'") {
			return false
		}
		end := 1 + len(n.Value)
		return len(text) > end && bytes.HasPrefix(text[1:], []byte(n.Value)) && text[end] == text[0]
	case yaml.LiteralStyle, yaml.FoldedStyle:
		return false
	}
	return bytes.HasPrefix(text, []byte(n.Value))
}

// ValueAt returns the position of the first character of a scalar's text in the file, which
// differs from the node's position for quoted scalars and block scalars. ok is false when the
// value's text is not written verbatim on one line (block scalars, multi-line values, escapes):
// use Offset to find a later character of those.
func ValueAt(path string, n *yaml.Node) (pos Pos, ok bool) {
	n = resolveAlias(n)
	if t, found := recalled(n); found {
		if line, col, mapped := t.locate(n, 0); mapped {
			return Pos{Path: path, Line: line, Col: col}, false
		}
		return At(path, n), false
	}
	pos = At(path, n)
	switch n.Style {
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		pos.Col++
		if n.Style == yaml.DoubleQuotedStyle && strings.ContainsAny(n.Value, "\"\\") {
			return pos, false
		}
		if n.Style == yaml.SingleQuotedStyle && strings.Contains(n.Value, "'") {
			return pos, false
		}
	case yaml.LiteralStyle, yaml.FoldedStyle:
		return pos, false
	}
	return pos, !strings.Contains(n.Value, "\n")
}

// Offset returns the position of the character at (line, col) of a scalar's value, where line
// is 1-based and col 0-based within the value, as expr reports them; a col past the end of its
// line goes on into the next lines, so (1, k) is the value's k-th character. For a scalar that
// Parse returned, this is the character's real place in the file however the value is written:
// a block scalar, a value folded over several lines, a quoted value with escapes. When the
// value cannot be mapped onto the file, it returns the position of the node itself.
func Offset(path string, n *yaml.Node, line, col int) Pos {
	n = resolveAlias(n)
	if t, found := recalled(n); found {
		if l, c, ok := t.locate(n, runeIndex(n.Value, line, col)); ok {
			return Pos{Path: path, Line: l, Col: c}
		}
		return At(path, n)
	}
	pos, ok := ValueAt(path, n)
	if !ok || line != 1 {
		return At(path, n)
	}
	pos.Col += col
	return pos
}

// runeIndex is the index among the characters of value of the character at (line, col).
func runeIndex(value string, line, col int) int {
	i := 0
	for l := 1; l < line; l++ {
		nl := strings.IndexByte(value, '\n')
		if nl < 0 {
			break
		}
		i += utf8.RuneCountInString(value[:nl+1])
		value = value[nl+1:]
	}
	return i + max(col, 0)
}

// locate returns the file position of character want of n's value (one past the last
// character when want is the value's length), by reading the value as written alongside the
// value as parsed. ok is false when the two part ways, which would be a bug in this reading.
func (t scalarText) locate(n *yaml.Node, want int) (line, col int, ok bool) {
	r := reader{data: t.data, off: t.off, line: t.line, col: t.col}
	block := n.Style == yaml.LiteralStyle || n.Style == yaml.FoldedStyle
	switch {
	case block:
		r.header()
	case n.Style == yaml.DoubleQuotedStyle || n.Style == yaml.SingleQuotedStyle:
		r.next()
	}
	lastLine, lastCol := r.line, r.col
	i := 0
	for _, v := range n.Value {
		if r.off >= len(r.data) {
			return 0, 0, false
		}
		line, col, ok := r.match(n.Style, v)
		if !ok {
			return 0, 0, false
		}
		if i == want {
			return line, col, true
		}
		lastLine, lastCol = line, col+1
		i++
	}
	return lastLine, lastCol, true
}

// reader walks the text of one scalar as written.
type reader struct {
	data      []byte
	off       int
	line, col int
	// indent is the indentation of a block scalar's content, -1 until its first line.
	indent int
}

func (r *reader) peek(k int) byte {
	if r.off+k < len(r.data) {
		return r.data[r.off+k]
	}
	return 0
}

func (r *reader) next() {
	if r.off >= len(r.data) {
		return
	}
	if r.data[r.off] == '\n' {
		r.off++
		r.line++
		r.col = 1
		return
	}
	_, size := utf8.DecodeRune(r.data[r.off:])
	r.off += size
	r.col++
}

// header skips a block scalar's indicator line and finds the indentation of its content:
// that of its first line that is not blank.
func (r *reader) header() {
	for r.off < len(r.data) && r.data[r.off] != '\n' {
		r.next()
	}
	r.next()
	r.indent = 0
	for i := r.off; i < len(r.data); {
		j := i
		for j < len(r.data) && r.data[j] == ' ' {
			j++
		}
		if j < len(r.data) && r.data[j] != '\n' && r.data[j] != '\r' {
			r.indent = j - i
			break
		}
		k := bytes.IndexByte(r.data[j:], '\n')
		if k < 0 {
			break
		}
		i = j + k + 1
	}
	r.skipIndent()
}

func (r *reader) skipIndent() {
	for k := 0; k < r.indent && r.peek(0) == ' '; k++ {
		r.next()
	}
}

// newline steps over a line break of a block scalar and the indentation of the next line.
func (r *reader) newline() {
	if r.peek(0) == '\r' {
		r.next()
	}
	r.next()
	r.skipIndent()
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// match finds where the value's next character v is written, and steps past it.
func (r *reader) match(style yaml.Style, v rune) (line, col int, ok bool) {
	block := style == yaml.LiteralStyle || style == yaml.FoldedStyle
	for range 1 << 16 {
		if r.off >= len(r.data) {
			return 0, 0, false
		}
		c := r.peek(0)
		line, col = r.line, r.col
		switch {
		case style == yaml.DoubleQuotedStyle && c == '\\':
			if e := r.peek(1); e == '\n' || e == '\r' {
				// An escaped line break joins the lines without a space: step over the
				// backslash, and the blanks that follow are dropped below.
				r.next()
				continue
			}
			size := 2
			switch r.peek(1) {
			case 'x':
				size = 4
			case 'u':
				size = 6
			case 'U':
				size = 10
			}
			for range size {
				r.next()
			}
			return line, col, true
		case style == yaml.SingleQuotedStyle && c == '\'' && r.peek(1) == '\'':
			r.next()
			r.next()
			return line, col, true
		case rune(c) == v || c >= utf8.RuneSelf && v >= utf8.RuneSelf:
			if block && c == '\n' {
				r.newline()
			} else {
				r.next()
			}
			return line, col, true
		case block && (c == '\n' || c == '\r'):
			// A folded line break: the value has a space where the file breaks the line, or
			// the break of a line followed by blank lines, which the value drops.
			r.newline()
			if v == ' ' {
				return line, col, true
			}
		case !block && isBlank(c):
			// A flow value drops the spaces around a line break and folds the break into a
			// space, or into one line break per blank line that follows.
			for r.off < len(r.data) && isBlank(r.peek(0)) {
				r.next()
			}
			if v == ' ' || v == '\n' {
				return line, col, true
			}
		case v == '\n' || v == ' ':
			// More line breaks in the value than the fold above consumed.
			return line, col, true
		default:
			return 0, 0, false
		}
	}
	return 0, 0, false
}
