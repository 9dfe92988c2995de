// Package expression compiles and evaluates the expressions of rules (`when`) and persona
// placeholders (`{{ ... }}`) against one request: its context, its metadata and its user.
//
// Every expression is compiled once, at load, against the same declared environment, so a
// misspelt variable fails the load instead of a request. Evaluation reuses pooled virtual
// machines and environments: a decision that tries many rules allocates no more than one that
// tries a single rule.
package expression

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/types"
	"github.com/expr-lang/expr/vm"
	"github.com/twmb/murmur3"
	"gopkg.in/yaml.v3"

	"github.com/persona-router/persona-router/internal/source"
)

// Limits that keep a hostile or careless expression from exhausting the process. Expressions
// always terminate (expr has no loops), so size and memory are what need bounding.
const (
	// MaxNodes bounds the size of one expression's syntax tree.
	MaxNodes = 1000
	// MemoryBudget bounds what one evaluation may allocate, in expr's units (roughly one per
	// element of a built array, map or range).
	MemoryBudget = 10_000
)

// Input is what a decision is made on.
type Input struct {
	// Context names the part of the product the session is for ("" when the frontend sent none).
	Context string
	// Metadata is what the frontend sent about the session: JSON values.
	Metadata map[string]any
	// User holds the signed-in user's claims, with "id" for the subject; empty when anonymous.
	User map[string]any
}

// roots are the variables whose top-level keys expressions may read directly.
var roots = [...]string{"metadata", "user"}

// Compiler compiles the expressions of one configuration. Besides compiling, it records every
// `metadata.key` and `user.key` the expressions read: those reads are turned into variables of
// their own, filled in once per request, because expr reads map members through reflection,
// which allocates on every evaluation, while it reads variables of a map environment directly.
// A Compiler is not safe for concurrent use.
type Compiler struct {
	reads []read
	index map[string]bool
}

// read is one flattened member read: the variable named flat holds root[key].
type read struct {
	root int
	key  string
	flat string
}

// NewCompiler returns a Compiler for one configuration.
func NewCompiler() *Compiler {
	return &Compiler{index: make(map[string]bool)}
}

// Compile compiles one expression against the request environment: `context` (a string),
// `metadata` and `user` (maps), and the function bucket.
func (c *Compiler) Compile(src string) (*vm.Program, error) {
	tree, err := parser.Parse(src)
	if err != nil {
		return expr.Compile(src, options(nil)...) // reports the syntax error as expr words it
	}
	reads := flattenable(tree.Node)
	p, err := expr.Compile(src, options(reads)...)
	if err != nil {
		return nil, err
	}
	for _, r := range reads {
		if !c.index[r.flat] {
			c.index[r.flat] = true
			c.reads = append(c.reads, r)
		}
	}
	return p, nil
}

// Layout returns what evaluations of this Compiler's programs must fill in per request.
func (c *Compiler) Layout() *Layout {
	return &Layout{reads: slices.Clone(c.reads)}
}

// Layout lists the member reads of one configuration's programs. It is immutable.
type Layout struct {
	reads []read
}

func options(reads []read) []expr.Option {
	object := types.TypeOf(map[string]any{})
	env := types.Map{"context": types.String, "metadata": object, "user": object}
	for _, r := range reads {
		env[r.flat] = types.Any
	}
	return []expr.Option{
		expr.Env(env),
		expr.Function("bucket", func(params ...any) (any, error) {
			key, ok := params[0].(string)
			if !ok {
				return nil, fmt.Errorf("bucket: the key must be a string, got %T", params[0])
			}
			return Bucket(key), nil
		}, new(func(string) int)),
		expr.MaxNodes(MaxNodes),
		expr.Patch(flattener{}),
	}
}

// flattenable lists the member reads of an expression that can become variables: a literal
// key of metadata or user, as in metadata.tier, user?.id or metadata["product"]. An expression
// that declares a variable named like a root is left alone.
func flattenable(root ast.Node) []read {
	var c collector
	ast.Walk(&root, &c)
	if c.shadowed {
		return nil
	}
	return c.reads
}

type collector struct {
	reads    []read
	shadowed bool
}

func (c *collector) Visit(node *ast.Node) {
	if v, ok := (*node).(*ast.VariableDeclaratorNode); ok && slices.Contains(roots[:], v.Name) {
		c.shadowed = true
	}
	if r, ok := asRead(*node); ok && !slices.ContainsFunc(c.reads, func(x read) bool { return x.flat == r.flat }) {
		c.reads = append(c.reads, r)
	}
}

func asRead(n ast.Node) (read, bool) {
	m, ok := n.(*ast.MemberNode)
	if !ok || m.Method {
		return read{}, false
	}
	id, ok := m.Node.(*ast.IdentifierNode)
	if !ok {
		return read{}, false
	}
	key, ok := m.Property.(*ast.StringNode)
	if !ok {
		return read{}, false
	}
	i := slices.Index(roots[:], id.Value)
	if i < 0 {
		return read{}, false
	}
	// The dot in the name keeps it apart from every identifier an expression can spell.
	return read{root: i, key: key.Value, flat: id.Value + "." + key.Value}, true
}

// flattener replaces each flattenable member read with its variable. The roots are never nil
// (Acquire makes absent ones empty), so an optional read (user?.id) means the same as a plain
// one.
type flattener struct{}

func (flattener) Visit(node *ast.Node) {
	if r, ok := asRead(*node); ok {
		ast.Patch(node, &ast.IdentifierNode{Value: r.flat})
	}
}

// Bucket maps key to 0–99, the same on every process, machine and restart: the MurmurHash3
// x86 32-bit hash of the key's UTF-8 bytes with seed 0, modulo 100. Percentage rollouts use it,
// e.g. bucket(user.id + ":sales-v2") < 20.
func Bucket(key string) int {
	return int(murmur3.StringSum32(key) % 100)
}

// Evaluator evaluates programs against one Input. It is not safe for concurrent use; take one
// per request with Acquire and give it back with Release.
type Evaluator struct {
	vm  vm.VM
	env map[string]any
}

var pool = sync.Pool{New: func() any {
	return &Evaluator{
		vm:  vm.VM{MemoryBudget: MemoryBudget},
		env: make(map[string]any, 8),
	}
}}

var empty = map[string]any{}

// Acquire returns an Evaluator bound to in, for programs compiled by the Compiler whose layout
// is l. Absent metadata or user are empty maps, so expressions see `metadata.tier` as nil
// rather than failing on a nil map.
func Acquire(in Input, l *Layout) *Evaluator {
	e := pool.Get().(*Evaluator)
	src := [len(roots)]map[string]any{orEmpty(in.Metadata), orEmpty(in.User)}
	e.env["context"] = in.Context
	e.env["metadata"], e.env["user"] = src[0], src[1]
	for _, r := range l.reads {
		e.env[r.flat] = src[r.root][r.key]
	}
	return e
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return empty
	}
	return m
}

// Release returns e to the pool. e must not be used afterwards. Its environment keeps
// pointing at the request until the next Acquire overwrites it or the pool is collected:
// clearing it would cost as much as filling it.
func (e *Evaluator) Release() {
	pool.Put(e)
}

// Eval runs p. A run-time failure (nil + "x", a memory budget exceeded) is an error, never a
// panic.
func (e *Evaluator) Eval(p *vm.Program) (any, error) {
	return e.vm.Run(p, e.env)
}

// ErrorAt positions an error from compiling an expression that starts at byte offset start of
// the string scalar n, so that it points at the offending character in the file.
func ErrorAt(path string, n *yaml.Node, start int, what string, err error) *source.Error {
	var fe *file.Error
	if !errors.As(err, &fe) {
		return source.Errorf(source.At(path, n), "%s: %v", what, err)
	}
	col := fe.Column
	if fe.Line == 1 {
		col += utf8.RuneCountInString(n.Value[:start])
	}
	return source.Errorf(source.Offset(path, n, fe.Line, col), "%s: %s", what, fe.Message)
}
