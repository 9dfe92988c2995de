package expression

import (
	"errors"
	"regexp"
	"slices"
	"strings"

	"github.com/expr-lang/expr/file"

	"github.com/persona-router/persona-router/internal/source"
)

var (
	unknownName     = regexp.MustCompile(`^unknown name ([A-Za-z_][A-Za-z0-9_]*)`)
	unexpectedToken = regexp.MustCompile(`^unexpected token (Operator|Identifier)\("([^"]*)"\)`)
)

// hint adds to a compile error what a person most likely meant: the name closest to an unknown
// one, == for =, && for AND. The error keeps its position.
func hint(err error) error {
	var fe *file.Error
	if !errors.As(err, &fe) {
		return err
	}
	msg := fe.Message
	if m := unknownName.FindStringSubmatch(msg); m != nil {
		known := append([]string{"context", "metadata", "user", "bucket", "sign"}, builtins...)
		if h := source.Suggest(m[1], known); h != "" {
			msg = "unknown name " + m[1] + h + strings.TrimPrefix(msg, m[0])
		}
	} else if m := unexpectedToken.FindStringSubmatch(msg); m != nil {
		switch word := m[2]; {
		case word == "=":
			msg = "= is not a comparison: compare with == (like context == \"sales\")"
		case slices.Contains([]string{"AND", "OR", "NOT", "And", "Or", "Not"}, word):
			msg = word + " is not an operator: write " + strings.ToLower(word) + " (lower case), or " + map[string]string{"and": "&&", "or": "||", "not": "!"}[strings.ToLower(word)]
		}
	}
	if msg == fe.Message {
		return err
	}
	out := *fe
	out.Message = msg
	return &out
}
