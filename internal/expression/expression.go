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
	"sync"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
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

// declared is the environment expressions are type-checked against: `context` is a string,
// `metadata` and `user` are maps whose values are unknown until run time.
var declared = map[string]any{
	"context":  "",
	"metadata": map[string]any{},
	"user":     map[string]any{},
}

var options = []expr.Option{
	expr.Env(declared),
	expr.Function("bucket", func(params ...any) (any, error) {
		key, ok := params[0].(string)
		if !ok {
			return nil, fmt.Errorf("bucket: the key must be a string, got %T", params[0])
		}
		return Bucket(key), nil
	}, new(func(string) int)),
	expr.MaxNodes(MaxNodes),
}

// Compile compiles one expression against the request environment.
func Compile(src string) (*vm.Program, error) {
	return expr.Compile(src, options...)
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
		env: make(map[string]any, len(declared)),
	}
}}

var empty = map[string]any{}

// Acquire returns an Evaluator bound to in. Absent metadata or user are empty maps, so
// expressions see `metadata.tier` as nil rather than failing on a nil map.
func Acquire(in Input) *Evaluator {
	e := pool.Get().(*Evaluator)
	e.env["context"] = in.Context
	e.env["metadata"] = orEmpty(in.Metadata)
	e.env["user"] = orEmpty(in.User)
	return e
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return empty
	}
	return m
}

// Release returns e to the pool. e must not be used afterwards.
func (e *Evaluator) Release() {
	e.env["context"], e.env["metadata"], e.env["user"] = nil, nil, nil
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
