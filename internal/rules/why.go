package rules

import (
	"maps"
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"

	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/source"
)

// Why is what explain says about one rule beyond whether it matched.
type Why struct {
	// Failed is the first top-level conjunct of `when` that was false for the request (for a
	// rule not matched), as written.
	Failed string
	// Buckets maps the key of every bucket() call of `when` to its value for the request.
	Buckets map[string]int
}

// Why works out, for explain, which part of the rule's `when` failed for in and what its
// bucket() calls gave. It compiles the parts afresh: explain is rare, and the decision path
// keeps only the whole expression.
func (r *Rule) Why(in expression.Input) Why {
	var w Why
	tree, err := parser.Parse(r.When)
	if err != nil {
		return w
	}
	for _, call := range bucketCalls(tree.Node) {
		key, ok := evaluate(call.Arguments[0].String(), in)
		if s, isString := key.(string); ok && isString {
			if w.Buckets == nil {
				w.Buckets = make(map[string]int)
			}
			w.Buckets[s] = expression.Bucket(s)
		}
	}
	for _, c := range conjuncts(tree.Node) {
		v, ok := evaluate(c.String(), in)
		if b, isBool := v.(bool); !ok || !isBool || !b {
			w.Failed = c.String()
			break
		}
	}
	return w
}

// evaluate compiles and evaluates one expression against in; ok is false when it cannot.
func evaluate(src string, in expression.Input) (any, bool) {
	c := expression.NewCompiler()
	p, err := c.Compile(src)
	if err != nil {
		return nil, false
	}
	ev := expression.Acquire(in, c.Layout())
	defer ev.Release()
	v, err := ev.Eval(p)
	return v, err == nil
}

// conjuncts splits an expression at its top-level && (or `and`).
func conjuncts(n ast.Node) []ast.Node {
	if b, ok := n.(*ast.BinaryNode); ok && (b.Operator == "&&" || b.Operator == "and") {
		return append(conjuncts(b.Left), conjuncts(b.Right)...)
	}
	return []ast.Node{n}
}

// bucketCalls finds the bucket(key) calls of an expression.
func bucketCalls(root ast.Node) []*ast.CallNode {
	var calls []*ast.CallNode
	ast.Walk(&root, walker(func(n *ast.Node) {
		if call, ok := (*n).(*ast.CallNode); ok && len(call.Arguments) == 1 {
			if id, ok := call.Callee.(*ast.IdentifierNode); ok && id.Value == "bucket" {
				calls = append(calls, call)
			}
		}
	}))
	return calls
}

type walker func(*ast.Node)

func (f walker) Visit(n *ast.Node) { f(n) }

// Skipped lists the rules the context index leaves out for context, in decision order.
func (s *Set) Skipped(context string) []*Rule {
	candidates, ok := s.byContext[context]
	if !ok {
		candidates = s.anyContext
	}
	var out []*Rule
	for _, r := range s.rules {
		if !slices.Contains(candidates, r) {
			out = append(out, r)
		}
	}
	return out
}

// ContextHint says, for a context no rule is written for, which context a rule is written for
// that it may have meant: one that differs in case, or by a typo. "" when there is none.
func (s *Set) ContextHint(context string) string {
	if _, ok := s.byContext[context]; ok || context == "" {
		return ""
	}
	known := slices.Sorted(maps.Keys(s.byContext))
	hint := source.Suggest(context, known)
	if hint == "" {
		for _, k := range known {
			if strings.EqualFold(strings.NewReplacer("_", "-", " ", "-").Replace(k), strings.NewReplacer("_", "-", " ", "-").Replace(context)) {
				hint = ", did you mean \"" + k + "\"?"
			}
		}
	}
	return strings.TrimPrefix(hint, ", ")
}
