package persona

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"

	"github.com/persona-router/persona-router/internal/catalogue"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/source"
)

// Text is a string value that may contain `{{ expr }}` placeholders, compiled at load.
type Text struct {
	Source string
	parts  []part
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
	t := &Text{Source: s}
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
	return t, nil
}

// runePos is the file position of byte offset off of the scalar value s.
func runePos(path string, n *yaml.Node, s string, off int) source.Pos {
	return source.Offset(path, n, 1, utf8.RuneCountInString(s[:off]))
}

// Single returns the program of a text that is exactly one placeholder, whose value keeps the
// expression's type.
func (t *Text) Single() (*vm.Program, bool) {
	if len(t.parts) == 1 && t.parts[0].prog != nil {
		return t.parts[0].prog, true
	}
	return nil, false
}

// Constant tells whether every placeholder of the text reads nothing of the request, so that
// it can be evaluated once, at load.
func (t *Text) Constant() bool {
	for _, p := range t.parts {
		if p.prog != nil && !expression.Constant(p.prog) {
			return false
		}
	}
	return true
}

// evalConstant evaluates a Constant text: the placeholder's value for a single placeholder, a
// string otherwise.
func (t *Text) evalConstant() (any, error) {
	if prog, ok := t.Single(); ok {
		v, err := expression.EvalConstant(prog)
		if err != nil {
			return nil, fmt.Errorf("placeholder {{ %s }}: %w", prog.Source().String(), err)
		}
		return v, nil
	}
	b, err := t.append(nil, expression.EvalConstant)
	return string(b), err
}

// Append appends the text with its placeholders evaluated by ev: nil as nothing, numbers in
// their shortest form. A placeholder giving a mapping or a list is an error.
func (t *Text) Append(dst []byte, ev *expression.Evaluator) ([]byte, error) {
	return t.append(dst, ev.Eval)
}

func (t *Text) append(dst []byte, eval func(*vm.Program) (any, error)) ([]byte, error) {
	for _, p := range t.parts {
		if p.prog == nil {
			dst = append(dst, p.lit...)
			continue
		}
		v, err := eval(p.prog)
		if err != nil {
			return dst, fmt.Errorf("placeholder {{ %s }}: %w", p.prog.Source().String(), err)
		}
		var ok bool
		if dst, ok = appendValue(dst, v); !ok {
			return dst, fmt.Errorf("placeholder {{ %s }} gives %s, which has no text (expected a string, number or boolean)", p.prog.Source().String(), catalogue.Describe(v))
		}
	}
	return dst, nil
}

// stringOf is the text a placeholder's value renders as in a string. Mappings and lists have
// no text.
func stringOf(v any) (string, bool) {
	if s, ok := v.(string); ok {
		return s, true
	}
	b, ok := appendValue(nil, v)
	return string(b), ok
}

// appendValue appends a placeholder's value as text: nil as nothing, numbers in their shortest
// form. It reports false for a value that has no text (a mapping or a list).
func appendValue(b []byte, v any) ([]byte, bool) {
	switch v := v.(type) {
	case nil:
	case string:
		b = append(b, v...)
	case int:
		b = strconv.AppendInt(b, int64(v), 10)
	case float64:
		b = strconv.AppendFloat(b, v, 'f', -1, 64)
	case bool:
		b = strconv.AppendBool(b, v)
	default:
		return b, false
	}
	return b, true
}
