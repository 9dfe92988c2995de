package expression

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm/runtime"
)

// Run-time guards. The static estimate (cost.go) refuses at load every expression whose worst
// case is over budget, so an accepted expression never trips these; they are the second line,
// for whatever the estimate could get wrong. The patcher below rewrites each compiled
// expression so that:
//
//   - every iteration of a predicate (the body of all, any, filter, map, reduce…) charges the
//     evaluation's meter with the size of the body, so no nesting of loops can run past
//     MaxCost steps;
//   - string concatenation (+), repeat, replace and join charge the bytes they build before
//     building them, so no evaluation allocates more than MaxMemory bytes of strings;
//   - sign (sign.go) gets the request's signer, and charges the bytes it builds and its HMAC's
//     steps before signing.
//
// The meter is a variable of the environment whose name no expression can spell ("meter."),
// set per evaluation by Eval; so is the signer ("signer."), set per request by Acquire.

// meter counts what one evaluation has done.
type meter struct {
	steps int64
	bytes int64
}

const meterVar = "meter."

// ErrBudget is the cause of an evaluation stopped by a run-time guard.
var ErrBudget = errors.New("expression budget exceeded")

func (m *meter) step(n int64) error {
	m.steps += n
	if m.steps > MaxCost {
		return fmt.Errorf("%w: more than %d steps", ErrBudget, MaxCost)
	}
	return nil
}

func (m *meter) alloc(n int64) error {
	m.bytes += n
	if m.bytes > MaxMemory {
		return fmt.Errorf("%w: more than %d bytes of strings", ErrBudget, MaxMemory)
	}
	return nil
}

// Names of the guard functions the patcher calls. The dot keeps them apart from every name
// an expression can spell.
const (
	fnConcat  = "concat."
	fnAdd     = "add."
	fnRepeat  = "repeat."
	fnReplace = "replace."
	fnJoin    = "join."
	fnTick    = "tick."
	fnSign    = "sign."
)

// tickTypes lists the body types a tick keeps; any other type goes through the "any" tick.
var tickTypes = map[reflect.Kind]string{
	reflect.Bool:    "bool",
	reflect.Int:     "int",
	reflect.Float64: "float",
	reflect.String:  "string",
}

func guardOptions() []expr.Option {
	tick := func(params ...any) (any, error) {
		if err := params[0].(*meter).step(int64(params[1].(int))); err != nil {
			return nil, err
		}
		return params[2], nil
	}
	return []expr.Option{
		expr.Function(fnTick+"bool", tick, new(func(*meter, int, bool) bool)),
		expr.Function(fnTick+"int", tick, new(func(*meter, int, int) int)),
		expr.Function(fnTick+"float", tick, new(func(*meter, int, float64) float64)),
		expr.Function(fnTick+"string", tick, new(func(*meter, int, string) string)),
		expr.Function(fnTick+"any", tick, new(func(*meter, int, any) any)),
		expr.Function(fnConcat, func(params ...any) (any, error) {
			a, b := params[1].(string), params[2].(string)
			if err := params[0].(*meter).alloc(int64(len(a) + len(b))); err != nil {
				return nil, err
			}
			return a + b, nil
		}, new(func(*meter, string, string) string)),
		expr.Function(fnAdd, func(params ...any) (any, error) {
			a, aok := params[1].(string)
			b, bok := params[2].(string)
			if aok && bok {
				if err := params[0].(*meter).alloc(int64(len(a) + len(b))); err != nil {
					return nil, err
				}
				return a + b, nil
			}
			return runtime.Add(params[1], params[2]), nil
		}, new(func(*meter, any, any) any)),
		expr.Function(fnRepeat, func(params ...any) (any, error) {
			s, n := params[1].(string), runtime.ToInt(params[2])
			if n < 0 {
				return nil, fmt.Errorf("repeat: the count must not be negative, got %d", n)
			}
			if n > 0 && len(s) > int(MaxMemory)/n {
				return nil, fmt.Errorf("%w: repeat would build more than %d bytes", ErrBudget, MaxMemory)
			}
			if err := params[0].(*meter).alloc(int64(len(s) * n)); err != nil {
				return nil, err
			}
			return strings.Repeat(s, n), nil
		}, new(func(*meter, string, int) string)),
		expr.Function(fnReplace, func(params ...any) (any, error) {
			s, old, repl := params[1].(string), params[2].(string), params[3].(string)
			n := strings.Count(s, old)
			if err := params[0].(*meter).alloc(int64(len(s)) + int64(n)*int64(len(repl))); err != nil {
				return nil, err
			}
			return strings.ReplaceAll(s, old, repl), nil
		}, new(func(*meter, string, string, string) string)),
		expr.Function(fnJoin, func(params ...any) (any, error) {
			glue := ""
			if len(params) == 3 {
				glue = params[2].(string)
			}
			var parts []string
			switch list := params[1].(type) {
			case []string:
				parts = list
			case []any:
				parts = make([]string, len(list))
				for i, v := range list {
					s, ok := v.(string)
					if !ok {
						return nil, fmt.Errorf("join: item %d is %T, not a string", i, v)
					}
					parts[i] = s
				}
			default:
				return nil, fmt.Errorf("join: expected a list of strings, got %T", params[1])
			}
			size := int64(len(glue)) * int64(max(len(parts)-1, 0))
			for _, p := range parts {
				size += int64(len(p))
			}
			if err := params[0].(*meter).alloc(size); err != nil {
				return nil, err
			}
			return strings.Join(parts, glue), nil
		}, new(func(*meter, any) string), new(func(*meter, any, string) string)),
		expr.Function(fnSign, func(params ...any) (any, error) {
			return params[0].(*signer).sign(params[1].(*meter), params[2], params[3:]...)
		}, new(func(*signer, *meter, string) string), new(func(*signer, *meter, string, int) string)),
	}
}

// guard is the patcher that routes loops and string building through the meter, and sign
// through the signer.
type guard struct{}

func meterNode() ast.Node { return &ast.IdentifierNode{Value: meterVar} }

func signerNode() ast.Node { return &ast.IdentifierNode{Value: signerVar} }

func call(name string, args ...ast.Node) *ast.CallNode {
	return &ast.CallNode{Callee: &ast.IdentifierNode{Value: name}, Arguments: args}
}

func (guard) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.BinaryNode:
		if n.Operator != "+" {
			return
		}
		l, r := kindOf(n.Left), kindOf(n.Right)
		switch {
		case l == reflect.String && r == reflect.String:
			ast.Patch(node, call(fnConcat, meterNode(), n.Left, n.Right))
		case (l == reflect.String || l == reflect.Interface) && (r == reflect.String || r == reflect.Interface):
			ast.Patch(node, call(fnAdd, meterNode(), n.Left, n.Right))
		}
	case *ast.BuiltinNode:
		switch n.Name {
		case "repeat":
			ast.Patch(node, call(fnRepeat, append([]ast.Node{meterNode()}, n.Arguments...)...))
		case "replace":
			ast.Patch(node, call(fnReplace, append([]ast.Node{meterNode()}, n.Arguments...)...))
		case "join":
			ast.Patch(node, call(fnJoin, append([]ast.Node{meterNode()}, n.Arguments...)...))
		}
	case *ast.CallNode:
		if isCallOf(n, "sign") {
			ast.Patch(node, call(fnSign, append([]ast.Node{signerNode(), meterNode()}, n.Arguments...)...))
		}
	case *ast.PredicateNode:
		kind, ok := tickTypes[kindOf(n.Node)]
		if !ok {
			kind = "any"
		}
		n.Node = call(fnTick+kind, meterNode(), &ast.IntegerNode{Value: bodySize(n.Node)}, n.Node)
	}
}

// kindOf is the kind of a checked node's type; Interface when the type is not known.
func kindOf(n ast.Node) reflect.Kind {
	t := n.Type()
	if t == nil {
		return reflect.Interface
	}
	return t.Kind()
}

// bodySize counts the nodes of a predicate body outside the bodies of predicates nested in it,
// which charge for themselves: what one iteration costs, in steps.
func bodySize(n ast.Node) int {
	var c sizer
	ast.Walk(&n, &c)
	return max(c.n-c.nested, 1)
}

type sizer struct{ n, nested int }

func (s *sizer) Visit(node *ast.Node) {
	s.n++
	if p, ok := (*node).(*ast.PredicateNode); ok {
		var inner sizer
		ast.Walk(&p.Node, &inner)
		s.nested += inner.n
	}
}
