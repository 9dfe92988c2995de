package persona

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"

	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/source"
)

// Text is a string value that may contain `{{ expr }}` placeholders, compiled at load.
type Text struct {
	Source string
	Pos    source.Pos
	parts  []part
	// size is a guess at the rendered length, so rendering allocates once.
	size int
}

// part is a literal run of text or a placeholder.
type part struct {
	lit  string
	prog *vm.Program
}

const (
	openDelim  = "{{"
	closeDelim = "}}"
)

// ParseText compiles the placeholders of a string scalar with c.
func ParseText(path string, n *yaml.Node, what string, c *expression.Compiler) (*Text, source.Errors) {
	s, err := source.String(path, n, what)
	if err != nil {
		return nil, source.Errors{err}
	}
	t := &Text{Source: s, Pos: source.At(path, n)}
	var errs source.Errors
	rest, offset := s, 0
	for {
		i := strings.Index(rest, openDelim)
		if i < 0 {
			break
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: rest[:i]})
		}
		start := offset + i
		j := strings.Index(rest[i+len(openDelim):], closeDelim)
		if j < 0 {
			errs.Addf(runePos(path, n, s, start), "%s: placeholder %q is not closed (expected %q)", what, openDelim, closeDelim)
			return nil, errs
		}
		inner := rest[i+len(openDelim) : i+len(openDelim)+j]
		src := strings.TrimSpace(inner)
		srcStart := start + len(openDelim) + strings.Index(inner, src)
		if src == "" {
			errs.Addf(runePos(path, n, s, start), "%s: empty placeholder (expected an expression between %q and %q)", what, openDelim, closeDelim)
		} else if prog, err := c.Compile(src); err != nil {
			errs.Add(expression.ErrorAt(path, n, srcStart, what+" placeholder", err))
		} else {
			t.parts = append(t.parts, part{prog: prog})
		}
		next := i + len(openDelim) + j + len(closeDelim)
		rest, offset = rest[next:], offset+next
	}
	if rest != "" || len(t.parts) == 0 {
		t.parts = append(t.parts, part{lit: rest})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	for _, p := range t.parts {
		t.size += len(p.lit)
		if p.prog != nil {
			t.size += 40
		}
	}
	return t, nil
}

// runePos is the file position of byte offset off of the scalar value s.
func runePos(path string, n *yaml.Node, s string, off int) source.Pos {
	return source.Offset(path, n, 1, utf8.RuneCountInString(s[:off]))
}

// Literal returns the text when it has no placeholders.
func (t *Text) Literal() (string, bool) {
	if len(t.parts) == 1 && t.parts[0].prog == nil {
		return t.parts[0].lit, true
	}
	return "", false
}

// Render evaluates the placeholders. nil renders as the empty string.
func (t *Text) Render(ev *expression.Evaluator) (string, error) {
	if s, ok := t.Literal(); ok {
		return s, nil
	}
	var b strings.Builder
	b.Grow(t.size)
	for _, p := range t.parts {
		if p.prog == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := ev.Eval(p.prog)
		if err != nil {
			return "", fmt.Errorf("placeholder {{ %s }}: %w", p.prog.Source().String(), err)
		}
		writeValue(&b, v)
	}
	return b.String(), nil
}

// writeValue writes a placeholder's value: nil as nothing, numbers in their shortest form.
func writeValue(b *strings.Builder, v any) {
	var num [32]byte
	switch v := v.(type) {
	case nil:
	case string:
		b.WriteString(v)
	case int:
		b.Write(strconv.AppendInt(num[:0], int64(v), 10))
	case float64:
		b.Write(strconv.AppendFloat(num[:0], v, 'f', -1, 64))
	case bool:
		b.Write(strconv.AppendBool(num[:0], v))
	default:
		b.WriteString(fmt.Sprint(v))
	}
}
