package expression

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr/file"

	"github.com/persona-router/persona-router/internal/source"
)

var (
	unknownName     = regexp.MustCompile(`^unknown name ([A-Za-z_][A-Za-z0-9_]*)`)
	unexpectedToken = regexp.MustCompile(`^unexpected token (Operator|Identifier)\("([^"]*)"\)`)
)

// hint adds to a compile error of src what a person most likely meant: the name closest to an
// unknown one, == for =, && for AND, and where a string that is never closed opens. The error
// keeps its position, but for the string.
func hint(err error, src string) error {
	var fe *file.Error
	if !errors.As(err, &fe) {
		return err
	}
	msg := fe.Message
	if m := unknownName.FindStringSubmatch(msg); m != nil {
		known := append(append(rootNames[:len(rootNames):len(rootNames)], "bucket", "sign"), builtins...)
		if h := source.Suggest(m[1], known); h != "" {
			msg = "unknown name " + m[1] + h + strings.TrimPrefix(msg, m[0])
		}
	} else if m := unexpectedToken.FindStringSubmatch(msg); m != nil {
		switch word := m[2]; {
		case m[1] == "Operator" && slices.Contains([]string{"contains", "startsWith", "endsWith", "matches", "in"}, word):
			msg = word + " is an operator, not a function: write a " + word + " b (like context " + word + " \"sales\")"
		case word == "=":
			msg = "= is not a comparison: compare with == (like context == \"sales\")"
		case slices.Contains([]string{"AND", "OR", "NOT", "And", "Or", "Not"}, word):
			msg = word + " is not an operator: write " + strings.ToLower(word) + " (lower case), or " + map[string]string{"and": "&&", "or": "||", "not": "!"}[strings.ToLower(word)]
		}
	}
	if strings.HasPrefix(msg, "unexpected token EOF") {
		msg = endHint(src)
	}
	out := *fe
	if strings.HasPrefix(msg, "literal not terminated") {
		if line, col, ok := unclosedQuote(src); ok {
			out.Line, out.Column = line, col
			msg = "a string opened here is never closed (the quotes around it do not match)"
		}
	}
	if msg == fe.Message && out.Line == fe.Line && out.Column == fe.Column {
		return err
	}
	out.Message = msg
	return &out
}

// unclosedQuote finds the quote that opens a string literal src never closes: its line
// (1-based) and column (0-based, in characters).
func unclosedQuote(src string) (line, col int, ok bool) {
	var quote rune
	start := 0
	for i := 0; i < len(src); i++ {
		c := rune(src[i])
		switch {
		case quote != 0 && c == '\\':
			i++
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\'' || c == '`'):
			quote, start = c, i
		}
	}
	if quote == 0 {
		return 0, 0, false
	}
	before := src[:start]
	line = strings.Count(before, "\n") + 1
	col = utf8.RuneCountInString(before[strings.LastIndexByte(before, '\n')+1:])
	return line, col, true
}

// endHint says why an expression ends too early: a bracket never closed, or an operator with
// nothing after it.
func endHint(src string) string {
	trimmed := strings.TrimSpace(src)
	for _, op := range []string{"??", "&&", "||", "==", "!=", ">=", "<=", "+", "-", "*", "/", "and", "or", "not", ">", "<", "?", ":"} {
		if strings.HasSuffix(trimmed, op) {
			return "the expression ends after " + op + ": something must follow it"
		}
	}
	for _, pair := range []string{"()", "[]", "{}"} {
		if strings.Count(src, pair[:1]) > strings.Count(src, pair[1:]) {
			return "a " + pair[:1] + " is never closed: expected " + pair[1:] + " before the end"
		}
	}
	return "unexpected end of the expression"
}
