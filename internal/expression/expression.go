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
	"hash"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/checker/nature"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/types"
	"github.com/expr-lang/expr/vm"
	"github.com/twmb/murmur3"
	"gopkg.in/yaml.v3"

	"github.com/persona-router/persona-router/internal/source"
)

// Limits that keep a hostile or careless expression from exhausting the process, beside the
// cost budget of cost.go.
const (
	// MaxNodes bounds the size of one expression's syntax tree.
	MaxNodes = 1000
	// MemoryBudget bounds the list items and map entries one evaluation may build, in expr's
	// own units; the estimate (MaxMemory) is the tighter bound, this is expr's own guard.
	MemoryBudget = MaxMemory / itemBytes
)

// Input is what a decision is made on.
type Input struct {
	// Context names the part of the product the session is for ("" when the frontend sent none).
	Context string
	// Metadata is what the frontend sent about the session: JSON values.
	Metadata map[string]any
	// User holds the signed-in user's claims, with "id" for the subject; empty when anonymous.
	User map[string]any
	// Persona is the personaConfig rendered so far, for the placeholders of overlay rules
	// (`{{ persona.systemPrompt }} Answer in French.`) and budgets; empty elsewhere.
	Persona map[string]any
	// Rule is the rule that chose the persona ("" for the default), for budgets.
	Rule string
	// Now is the request's time, from which the URLs sign() signs expire. Zero means the time
	// of the request's first sign() call: every URL of one request has the same expiry.
	Now time.Time
}

// Compiler compiles the expressions of one configuration and records which variables of the
// environment they read, so that each request fills in only those.
//
// A read of a literal key of metadata or user (metadata.tier, user?.id, metadata["product"])
// becomes a variable of its own ("metadata.tier"): expr reads map members through reflection,
// which allocates on every evaluation, while it reads variables of a map environment directly.
// A Compiler is not safe for concurrent use.
type Compiler struct {
	vars  []variable
	index map[string]bool
	// meta declares the metadata keys and their types; nil when no schema declares any, and
	// metadata is then dynamic.
	meta map[string]MetadataKey
	// persona lists the fields `persona` has, in an overlay rule's placeholders and budgets;
	// nil where `persona` cannot be read.
	persona []string
	// rule allows reading `rule`: only budgets may.
	rule bool
	// mac returns an HMAC keyed with the signing secret; nil without one (see sign.go).
	mac func() hash.Hash
}

// The request's parts, as sources of variables.
const (
	fromContext = iota
	fromMetadata
	fromUser
	fromPersona
	fromRule
)

var rootNames = [...]string{fromContext: "context", fromMetadata: "metadata", fromUser: "user", fromPersona: "persona", fromRule: "rule"}

// variable is one entry of the environment filled per request: a whole part of the request,
// or (key != "") one key of metadata or user.
type variable struct {
	name string
	from int
	key  string
}

// NewCompiler returns a Compiler for one configuration.
func NewCompiler(opts ...Option) *Compiler {
	c := &Compiler{index: make(map[string]bool)}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// Compile compiles one expression against the request environment: `context` (a string),
// `metadata` and `user` (maps), and the functions bucket and sign (sign only with a signing
// secret: WithSigningSecret). Its programs must be evaluated with this Compiler's Layout.
func (c *Compiler) Compile(src string) (*vm.Program, error) {
	p, vars, err := compile(src, c.mac != nil)
	if err != nil {
		return nil, hint(err, src)
	}
	if err := c.personaRead(src, vars); err != nil {
		return nil, err
	}
	if _, err := c.Type(src); err != nil {
		return nil, err
	}
	for _, v := range vars {
		if !c.index[v.name] {
			c.index[v.name] = true
			c.vars = append(c.vars, v)
		}
	}
	return p, nil
}

// Check compiles src to validate it, without recording what it reads: its program must not be
// evaluated with this Compiler's Layout.
func (c *Compiler) Check(src string) (*vm.Program, error) {
	p, vars, err := compile(src, c.mac != nil)
	if err == nil {
		err = c.personaRead(src, vars)
	}
	return p, hint(err, src)
}

// AllowRule lets the expressions compiled until it is called again read `rule`, the rule that
// chose the persona: budgets do.
func (c *Compiler) AllowRule(allow bool) { c.rule = allow }

// Reads tells whether a program compiled by a Compiler reads root (persona, rule, metadata…),
// whole or by member.
func Reads(p *vm.Program, root string) bool {
	found := false
	node := p.Node()
	ast.Walk(&node, visitFunc(func(n *ast.Node) {
		if id, ok := (*n).(*ast.IdentifierNode); ok && (id.Value == root || strings.HasPrefix(id.Value, root+".")) {
			found = true
		}
	}))
	return found
}

// AllowPersona lets the expressions compiled until it is called again read `persona`, the
// persona config rendered so far, whose fields are fields: an overlay rule's placeholders do.
// nil forbids it again.
func (c *Compiler) AllowPersona(fields []string) { c.persona = fields }

// personaRead refuses a read of `persona` where there is none to read, and of a field persona
// configs do not have (a typo would read nothing, silently).
func (c *Compiler) personaRead(src string, vars []variable) error {
	for _, v := range vars {
		if v.from == fromPersona && c.persona != nil && v.key != "" && !slices.Contains(c.persona, v.key) {
			tree, err := parser.Parse(src)
			if err != nil {
				break
			}
			var at ast.Node = tree.Node
			ast.Walk(&tree.Node, visitFunc(func(n *ast.Node) {
				if r, ok := asRead(*n); ok && r.name == v.name && at == tree.Node {
					at = *n
				}
			}))
			return (&file.Error{Location: at.Location(), Message: fmt.Sprintf("persona.%s is not a persona field%s", v.key, source.Suggest(v.key, c.persona))}).Bind(tree.Source)
		}
		if v.from == fromRule && !c.rule {
			tree, err := parser.Parse(src)
			if err != nil {
				break
			}
			return (&file.Error{Location: tree.Node.Location(), Message: "rule is only known in a budget's when and key, where it is the rule that chose the persona"}).Bind(tree.Source)
		}
		if v.from == fromPersona && c.persona == nil {
			tree, err := parser.Parse(src)
			if err != nil {
				break
			}
			var at ast.Node = tree.Node
			ast.Walk(&tree.Node, visitFunc(func(n *ast.Node) {
				if id, ok := (*n).(*ast.IdentifierNode); ok && id.Value == "persona" && at == tree.Node {
					at = id
				}
			}))
			return (&file.Error{Location: at.Location(), Message: "persona is only known in an overlay rule's placeholders (overlay: true), where it is the persona config rendered so far"}).Bind(tree.Source)
		}
	}
	return nil
}

// compile compiles src, whose sign() calls need signing to be true (a secret to sign with).
func compile(src string, signing bool) (*vm.Program, []variable, error) {
	tree, err := parser.Parse(src)
	if err != nil {
		_, err = checker.ParseCheck(src, config(nil)) // reports the syntax error as expr words it
		return nil, nil, err
	}
	if err := unavailable(tree); err != nil {
		return nil, nil, err
	}
	if err := signCalls(tree.Node, signing); err != nil {
		return nil, nil, err.Bind(tree.Source)
	}
	vars := variables(tree.Node)
	p, _, err := build(src, vars, true)
	return p, vars, err
}

// unavailable reports a call of one of expr's builtins that is switched off, which expr
// itself would call an unknown name, and a use of $env. The parser, which runs without a
// configuration, knows every builtin.
//
// $env is expr's name for the whole environment. An evaluator's environment is pooled and
// filled per request with only what its layout lists, so $env would read what an earlier
// request (of any configuration) left in it, and the guards' own state; nothing in the tree
// names what it reads, so neither the layout nor the estimate could account for it.
func unavailable(tree *parser.Tree) error {
	var found ast.Node
	var message string
	ast.Walk(&tree.Node, visitFunc(func(n *ast.Node) {
		if found != nil {
			return
		}
		switch n := (*n).(type) {
		case *ast.BuiltinNode:
			if !slices.Contains(builtins, n.Name) {
				found, message = n, fmt.Sprintf("%s() is not available in persona-router expressions: its cost cannot be bounded when the configuration loads (see the list of functions in docs)", n.Name)
			}
		case *ast.IdentifierNode:
			if n.Value == "$env" {
				found, message = n, "$env is not available in persona-router expressions: read the request by name, as context, metadata and user"
			}
		}
	}))
	if found == nil {
		return nil
	}
	return (&file.Error{Location: found.Location(), Message: message}).Bind(tree.Source)
}

type visitFunc func(*ast.Node)

func (f visitFunc) Visit(n *ast.Node) { f(n) }

// build does what expr.Compile does, with the cost estimate between type checking and
// optimizing: the estimate reads the tree the author wrote, with its types, before the
// optimizer rewrites it. Only tests of the run-time guards build without the estimate.
func build(src string, vars []variable, estimated bool) (*vm.Program, Cost, error) {
	cfg := config(vars)
	tree, err := checker.ParseCheck(src, cfg)
	if err != nil {
		return nil, Cost{}, err
	}
	var cost Cost
	if estimated {
		var ferr *file.Error
		if cost, ferr = estimate(tree.Node); ferr != nil {
			return nil, cost, ferr.Bind(tree.Source)
		}
	}
	// The guards go in after the estimate, which reads (and quotes in its errors) the
	// expression as written.
	ast.Walk(&tree.Node, guard{})
	if _, err := checker.Check(tree, cfg); err != nil {
		return nil, cost, err
	}
	if err := optimizer.Optimize(&tree.Node, cfg); err != nil {
		return nil, cost, err
	}
	if err := signLifetimes(tree.Node); err != nil {
		return nil, cost, err.Bind(tree.Source)
	}
	p, err := compiler.Compile(tree, cfg)
	return p, cost, err
}

// Layout returns what evaluations of this Compiler's programs must fill in per request.
func (c *Compiler) Layout() *Layout {
	return &Layout{vars: slices.Clone(c.vars), mac: c.mac}
}

// Layout lists the variables one configuration's programs read, and carries the Compiler's
// signing secret for their sign() calls (inside a function value, which nothing prints). It
// is immutable.
type Layout struct {
	vars []variable
	mac  func() hash.Hash
}

// builtins lists expr's builtin functions that expressions may call: the ones whose worst
// case the estimate knows. The others (groupBy, sortBy, toJSON, fromJSON, …) are off.
var builtins = []string{
	"len", "all", "none", "any", "one", "filter", "map", "find", "findIndex", "findLast",
	"findLastIndex", "count", "sum", "reduce", "abs", "ceil", "floor", "round", "int", "float",
	"string", "trim", "trimPrefix", "trimSuffix", "upper", "lower", "split", "splitAfter",
	"replace", "repeat", "join", "indexOf", "lastIndexOf", "hasPrefix", "hasSuffix", "max",
	"min", "mean", "median", "first", "last", "get", "keys", "values", "type", "now",
	"duration", "date",
}

// base is the configuration every expression compiles with, but for its environment. It is
// built once: expr's table of builtins and the guard functions cost more to build than a short
// expression costs to compile. Nothing writes to it after init.
var base = func() *conf.Config {
	cfg := conf.CreateNew()
	opts := append([]expr.Option{
		// sign is declared for the checker only: the guard patcher routes every call to
		// fnSign, which gets the request's signer.
		expr.Function("sign", func(...any) (any, error) {
			return nil, errors.New("sign() must be compiled by a persona-router Compiler")
		}, new(func(string) string), new(func(string, int) string)),
		expr.Function("bucket", func(params ...any) (any, error) {
			key, ok := params[0].(string)
			if !ok {
				return nil, fmt.Errorf("bucket: the key must be a string, got %T", params[0])
			}
			return Bucket(key), nil
		}, new(func(string) int)),
		expr.MaxNodes(MaxNodes),
		expr.Patch(flattener{}),
	}, guardOptions()...)
	for _, op := range opts {
		op(cfg)
	}
	for name := range cfg.Builtins {
		if !slices.Contains(builtins, name) {
			delete(cfg.Builtins, name)
		}
	}
	cfg.Check()
	return cfg
}()

// config returns the configuration compiling an expression that reads vars: the request's
// parts, the flattened member reads, the meter and the signer.
func config(vars []variable) *conf.Config { return typedConfig(vars, nil) }

// typedConfig is config with the metadata keys declared in meta given their declared types,
// for type checking.
func typedConfig(vars []variable, meta map[string]MetadataKey) *conf.Config {
	object := types.TypeOf(map[string]any{})
	env := types.Map{"context": types.String, "metadata": object, "user": object, "persona": object, "rule": types.String,
		meterVar: types.TypeOf(&meter{}), signerVar: types.TypeOf(&signer{})}
	for _, v := range vars {
		if v.key != "" {
			env[v.name] = types.Any
			if k, ok := meta[v.key]; ok && v.from == fromMetadata {
				env[v.name] = k.nature()
			}
		}
	}
	cfg := *base
	cfg.NtCache = nature.Cache{} // the checker fills it: one per compilation
	cfg.WithEnv(env)
	return &cfg
}

// variables lists what an expression reads: the member reads that can be flattened, and the
// parts of the request it uses otherwise (len(metadata), context). A part of the request
// cannot be shadowed: expr refuses `let metadata = …` ("cannot redeclare").
func variables(root ast.Node) []variable {
	var c collector
	ast.Walk(&root, &c)
	for from, n := range c.bare {
		if n > 0 {
			c.vars = append(c.vars, variable{rootNames[from], from, ""})
		}
	}
	return c.vars
}

type collector struct {
	vars []variable
	// bare counts, per part of the request, the uses not flattened.
	bare [len(rootNames)]int
}

// Visit sees children before their parent, so the identifier under a flattened read is first
// counted as bare, then taken back.
func (c *collector) Visit(node *ast.Node) {
	if id, ok := (*node).(*ast.IdentifierNode); ok {
		if i := slices.Index(rootNames[:], id.Value); i >= 0 {
			c.bare[i]++
		}
	}
	if v, ok := asRead(*node); ok {
		c.bare[v.from]--
		if !slices.ContainsFunc(c.vars, func(x variable) bool { return x.name == v.name }) {
			c.vars = append(c.vars, v)
		}
	}
}

func asRead(n ast.Node) (variable, bool) {
	m, ok := n.(*ast.MemberNode)
	if !ok || m.Method {
		return variable{}, false
	}
	id, ok := m.Node.(*ast.IdentifierNode)
	if !ok {
		return variable{}, false
	}
	key, ok := m.Property.(*ast.StringNode)
	if !ok {
		return variable{}, false
	}
	from := slices.Index(rootNames[:], id.Value)
	if from != fromMetadata && from != fromUser && from != fromPersona {
		return variable{}, false
	}
	// The dot in the name keeps it apart from every identifier an expression can spell.
	return variable{name: id.Value + "." + key.Value, from: from, key: key.Value}, true
}

// flattener replaces each flattenable member read with its variable. metadata and user are
// never nil (Acquire makes absent ones empty), so an optional read (user?.id) means the same
// as a plain one.
type flattener struct{}

func (flattener) Visit(node *ast.Node) {
	if v, ok := asRead(*node); ok {
		ast.Patch(node, &ast.IdentifierNode{Value: v.name})
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
	vm     vm.VM
	env    map[string]any
	meter  meter
	signer signer
}

var pool = sync.Pool{New: func() any {
	e := &Evaluator{
		vm:  vm.VM{MemoryBudget: MemoryBudget},
		env: make(map[string]any, 8),
	}
	e.env[meterVar] = &e.meter
	e.env[signerVar] = &e.signer
	return e
}}

var empty = map[string]any{}

// Acquire returns an Evaluator bound to in, for programs compiled by the Compiler whose layout
// is l. Absent metadata or user are empty maps, so expressions see `metadata.tier` as nil
// rather than failing on a nil map. Only the variables the layout lists are set: no program of
// that configuration reads the others. The URLs its programs sign all expire from one time:
// in.Now, or the time of the first sign() call until Release.
func Acquire(in Input, l *Layout) *Evaluator {
	e := pool.Get().(*Evaluator)
	e.signer = signer{mac: l.mac, user: in.User, now: in.Now}
	maps := [...]map[string]any{fromMetadata: orEmpty(in.Metadata), fromUser: orEmpty(in.User), fromPersona: orEmpty(in.Persona)}
	for _, v := range l.vars {
		switch {
		case v.from == fromContext:
			e.env[v.name] = in.Context
		case v.from == fromRule:
			e.env[v.name] = in.Rule
		case v.key == "":
			e.env[v.name] = maps[v.from]
		default:
			e.env[v.name] = maps[v.from][v.key]
		}
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
	e.meter = meter{}
	return e.vm.Run(p, e.env)
}

// ErrorAt positions an error from compiling an expression that starts at byte offset start of
// the string scalar n, so that it points at the offending character in the file.
func ErrorAt(path string, n *yaml.Node, start int, what string, err error) *source.Error {
	var fe *file.Error
	if !errors.As(err, &fe) {
		e := source.Errorf(source.At(path, n), "%s: %v", what, err)
		e.Code = source.CodeExpression
		return e
	}
	// The expression starts at byte start of the value, maybe on a later line of it.
	before := n.Value[:start]
	line, col := fe.Line+strings.Count(before, "\n"), fe.Column
	if fe.Line == 1 {
		col += utf8.RuneCountInString(before[strings.LastIndexByte(before, '\n')+1:])
	}
	e := source.Errorf(source.Offset(path, n, line, col), "%s: %s", what, fe.Message)
	e.Code = source.CodeExpression
	return e
}
