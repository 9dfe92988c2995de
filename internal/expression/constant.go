package expression

import (
	"errors"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
)

// Constant reports whether p reads nothing of the request: no context, metadata or user (nor
// any variable flattened from them, like "metadata.tier"), and calls neither now() nor sign().
// Such a program gives the same value for every request (bucket("x") and date("2026-01-02")
// included), so its value can be computed once, at load, with EvalConstant.
//
// It decides on the program's own tree, p.Node(): the tree the bytecode was compiled from,
// after the flattener, the guards and the optimizer. The layout's variables would not do: they
// say which variables to fill in, not whether the clock or the signer is read. And the check
// allows rather than forbids: every name in the tree must be a function called by name, a
// variable of a let, or the meter; any other name (context, metadata.tier, user, signer.,
// whatever a later version of expr or of this package adds) reads the request.
func Constant(p *vm.Program) bool {
	root := p.Node()
	var local names
	ast.Walk(&root, &local)
	constant := true
	ast.Walk(&root, visitFunc(func(n *ast.Node) {
		switch n := (*n).(type) {
		case *ast.IdentifierNode:
			if !local.callees[n] && !local.lets[n.Value] && n.Value != meterVar {
				constant = false
			}
		case *ast.CallNode:
			if isCallOf(n, fnSign) || isCallOf(n, "sign") {
				constant = false
			}
		case *ast.BuiltinNode:
			if n.Name == "now" {
				constant = false
			}
		}
	}))
	return constant
}

// names collects the names of a tree that do not read the environment: the functions called
// by name and the variables of lets.
type names struct {
	callees map[*ast.IdentifierNode]bool
	lets    map[string]bool
}

func (c *names) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.CallNode:
		if id, ok := n.Callee.(*ast.IdentifierNode); ok {
			if c.callees == nil {
				c.callees = map[*ast.IdentifierNode]bool{}
			}
			c.callees[id] = true
		}
	case *ast.VariableDeclaratorNode:
		if c.lets == nil {
			c.lets = map[string]bool{}
		}
		c.lets[n.Name] = true
	}
}

// ErrNotConstant is the error of EvalConstant for a program that reads the request.
var ErrNotConstant = errors.New("the expression reads the request (context, metadata, user, now() or sign()), so it has no value before one comes")

// EvalConstant evaluates a program for which Constant is true, with an empty request and the
// budget of every evaluation. A program that reads the request is refused with ErrNotConstant.
func EvalConstant(p *vm.Program) (any, error) {
	if !Constant(p) {
		return nil, ErrNotConstant
	}
	ev := Acquire(Input{}, &Layout{})
	defer ev.Release()
	return ev.Eval(p)
}
