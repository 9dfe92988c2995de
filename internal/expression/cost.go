package expression

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"

	"github.com/persona-router/persona-router/internal/source"
)

// The budget of one evaluation, and the bounds of what a request can hold that the estimate
// assumes. Every expression's worst case over all requests within the bounds is estimated at
// load (estimate below); an expression that could go over budget is refused with the reason.
//
// Why a static estimate: expr's virtual machine has no way to stop a running evaluation (no
// context, no step limit), and its memory budget is charged after builtins have allocated and
// never for strings. So the worst case has to be known before an expression goes live, as CEL
// does (google/cel-go checker/cost.go): each node's cost is derived from size bounds of its
// inputs, loops multiply the cost of their bodies by the size of what they iterate over, and
// reduce's accumulator is followed iteration by iteration. The run-time guards of guard.go
// stand behind it.
const (
	// MaxCost bounds the steps of one evaluation. A step is one node of the expression
	// evaluated once, or 64 bytes of string work (comparing, searching, copying). 100,000 steps
	// run in about 2 ms on one core of the 2-core machine the figures in docs/ come from.
	MaxCost = 100_000
	// MaxMemory bounds the bytes one evaluation may build: strings, and 16 bytes per list item
	// or map entry.
	MaxMemory = 1 << 20
	// MaxRange bounds the length of a range (1..N); a range's bounds must be constant.
	MaxRange = 10_000
	// bytesPerStep is how many bytes of string work cost one step.
	bytesPerStep = 64
	// itemBytes is what one list item or map entry costs in memory.
	itemBytes = 16
	// loopBytes and iterationBytes are what the virtual machine allocates to start a loop (its
	// scope) and for each iteration (the guard's call), measured.
	loopBytes      = 256
	iterationBytes = 64
	// infinite saturates every figure, so that no product overflows.
	infinite = int64(1) << 50
)

// Bounds of the request, as the server enforces them before any expression runs.
const (
	// ContextBytes is the longest context (the server accepts at most 64 characters).
	ContextBytes = 64
	// ValueBytes, ValueItems and ValueDepth bound the values of metadata and of the user's
	// claims: strings, lists and maps, and nesting (schema.MaxStringBytes, schema.MaxKeys and
	// schema.MaxDepth, which the server applies to both).
	ValueBytes = 1 << 10
	ValueItems = 64
	ValueDepth = 4
	// MetadataBytes bounds all of metadata together: a request body is at most 64 KiB.
	MetadataBytes = 64 << 10
	// ClaimsBytes bounds all of the user's claims together: a bearer token is at most 16 KiB.
	ClaimsBytes = 16 << 10
	// PersonaBytes bounds the persona config an overlay's placeholders read: a rendered
	// request is at most 256 KiB (persona.MaxRenderedBytes).
	PersonaBytes = 256 << 10
)

// Cost is the estimated worst case of one expression.
type Cost struct {
	// Steps and Memory are upper bounds of one evaluation's steps and bytes built.
	Steps, Memory int64
}

// bound is the largest value an expression can give: the bytes of a string, the items of a
// list or map and the bound of each item. A value of unknown type (a metadata value) has both.
type bound struct {
	bytes, items int64
	elem         *bound
	// total, when not 0, caps the size of the whole value: what a request can hold at all.
	total int64
}

// anyValue is the bound of a request value of unknown type that may nest depth more levels,
// of at most total bytes in all.
func anyValue(depth int, total int64) *bound {
	b := &bound{bytes: ValueBytes, total: total}
	if depth > 0 {
		b.items, b.elem = ValueItems, anyValue(depth-1, total)
	}
	return b
}

// size is the bound's total size in bytes, what copying or comparing the value costs.
func (b *bound) size() int64 {
	if b == nil {
		return 8
	}
	size := max(b.bytes, 8)
	if b.elem != nil {
		size = max(size, mul(b.items, add(itemBytes, b.elem.size())))
	}
	if b.total > 0 {
		size = min(size, b.total)
	}
	return size
}

// item is the bound of one item of a list or map; a string's item is a short string.
func (b *bound) item() *bound {
	switch {
	case b == nil:
		return &bound{}
	case b.elem == nil:
		return &bound{bytes: min(b.bytes, 4)}
	}
	return b.elem
}

func itemsOf(b *bound) int64 {
	if b == nil {
		return 0
	}
	return b.items
}

// bytesOf is the longest string a value can be, or print as when it is a number.
func bytesOf(b *bound) int64 {
	if b == nil {
		return 24
	}
	return b.bytes
}

// join is the bound of a value that is either a or b.
func join(a, b *bound) *bound {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	out := &bound{bytes: max(a.bytes, b.bytes), items: max(a.items, b.items)}
	if a.total > 0 && b.total > 0 {
		out.total = max(a.total, b.total)
	}
	if a.elem != nil || b.elem != nil {
		out.elem = join(a.elem, b.elem)
	}
	return out
}

func equalBounds(a, b *bound) bool {
	for a != nil && b != nil {
		if a.bytes != b.bytes || a.items != b.items || a.total != b.total {
			return false
		}
		a, b = a.elem, b.elem
	}
	return a == nil && b == nil
}

func add(a, b int64) int64 { return min(a+b, infinite) }

func mul(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a >= infinite/b {
		return infinite
	}
	return a * b
}

// est is the estimate of one node: its cost, what it builds and the bound of its value.
type est struct {
	steps, mem int64
	b          *bound
}

func (e est) plus(o est) est {
	return est{steps: add(e.steps, o.steps), mem: add(e.mem, o.mem), b: e.b}
}

// scope is what a predicate body's pointers (#, #acc) stand for.
type scope struct {
	item, acc *bound
}

// estimator walks one checked expression tree.
type estimator struct {
	vars   map[string]*bound
	scopes []scope
	// err is the first node found over budget, the innermost one.
	err *file.Error
}

// estimate returns the worst-case cost of a checked expression tree, or an error located at
// the innermost part that goes over budget or whose cost cannot be bounded.
func estimate(root ast.Node) (Cost, *file.Error) {
	e := &estimator{vars: map[string]*bound{}}
	r := e.node(root)
	if e.err != nil {
		return Cost{}, e.err
	}
	c := Cost{Steps: r.steps, Memory: r.mem}
	if c.Steps > MaxCost || c.Memory > MaxMemory {
		return c, overBudget(root, r)
	}
	return c, nil
}

// overBudget explains the estimate r of n, over budget in steps or memory: whichever it is
// further over.
func overBudget(n ast.Node, r est) *file.Error {
	if r.mem > MaxMemory && r.mem/MaxMemory >= r.steps/MaxCost {
		return &file.Error{Location: n.Location(), Message: fmt.Sprintf(
			"%s can build %s in one evaluation, over the budget of %s (limit what it repeats or concatenates)", clip(n), bytesText(r.mem), bytesText(MaxMemory))}
	}
	return &file.Error{Location: n.Location(), Message: fmt.Sprintf(
		"%s can take %s steps in one evaluation, over the budget of %d (iterate over less, or nest fewer loops)", clip(n), stepsText(r.steps), MaxCost)}
}

func budgetText(r est) string {
	if r.mem > MaxMemory {
		return bytesText(MaxMemory)
	}
	return fmt.Sprint(MaxCost, " steps")
}

func stepsText(n int64) string {
	if n >= infinite {
		return "unboundedly many"
	}
	return fmt.Sprint(n)
}

func bytesText(n int64) string {
	switch {
	case n >= infinite:
		return "unboundedly many bytes"
	case n >= 16<<20 || n == 1<<20:
		return fmt.Sprintf("%d MiB", (n+1<<20-1)>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", (n+1<<10-1)>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// clip quotes an expression for a message, shortened when long.
func clip(n ast.Node) string {
	s := n.String()
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return "`" + s + "`"
}

func (e *estimator) fail(n ast.Node, format string, args ...any) est {
	if e.err == nil {
		e.err = &file.Error{Location: n.Location(), Message: fmt.Sprintf(format, args...)}
	}
	return est{steps: infinite}
}

// check records the first node whose own estimate is over budget, so that the error points
// at the innermost culprit rather than at the whole expression.
func (e *estimator) check(n ast.Node, r est) est {
	if e.err == nil && (r.steps > MaxCost || r.mem > MaxMemory) {
		e.err = overBudget(n, r)
	}
	return r
}

func (e *estimator) node(n ast.Node) est {
	if e.err != nil {
		return est{steps: infinite}
	}
	return e.check(n, e.visit(n))
}

func scalar(steps int64) est { return est{steps: steps} }

// work is the cost of touching size bytes.
func work(size int64) int64 { return 1 + size/bytesPerStep }

func (e *estimator) visit(n ast.Node) est {
	switch n := n.(type) {
	case *ast.NilNode, *ast.BoolNode, *ast.IntegerNode, *ast.FloatNode:
		return scalar(1)
	case *ast.StringNode:
		return est{steps: 1, b: &bound{bytes: int64(len(n.Value))}}
	case *ast.IdentifierNode:
		return est{steps: 1, b: e.identifier(n.Value)}
	case *ast.PointerNode:
		if len(e.scopes) == 0 {
			return e.fail(n, "#%s is used outside a predicate", n.Name)
		}
		s := e.scopes[len(e.scopes)-1]
		switch n.Name {
		case "acc":
			return est{steps: 1, b: s.acc}
		case "index":
			return scalar(1)
		}
		return est{steps: 1, b: s.item}
	case *ast.UnaryNode:
		return e.node(n.Node).plus(scalar(1))
	case *ast.ChainNode:
		return e.node(n.Node)
	case *ast.MemberNode:
		obj := e.node(n.Node)
		r := obj.plus(e.node(n.Property)).plus(scalar(1))
		r.b = obj.b.item()
		return r
	case *ast.SliceNode:
		r := e.node(n.Node)
		for _, part := range []ast.Node{n.From, n.To} {
			if part != nil {
				r = r.plus(e.node(part))
			}
		}
		return r.plus(scalar(1))
	case *ast.ConditionalNode:
		c, a, b := e.node(n.Cond), e.node(n.Exp1), e.node(n.Exp2)
		return est{steps: add(c.steps, max(a.steps, b.steps)), mem: add(c.mem, max(a.mem, b.mem)), b: join(a.b, b.b)}
	case *ast.VariableDeclaratorNode:
		v := e.node(n.Value)
		prev, shadowed := e.vars[n.Name]
		e.vars[n.Name] = v.b
		r := e.node(n.Expr)
		if shadowed {
			e.vars[n.Name] = prev
		} else {
			delete(e.vars, n.Name)
		}
		return est{steps: add(v.steps, r.steps), mem: add(v.mem, r.mem), b: r.b}
	case *ast.SequenceNode:
		var r est
		for _, item := range n.Nodes {
			x := e.node(item)
			r = est{steps: add(r.steps, x.steps), mem: add(r.mem, x.mem), b: x.b}
		}
		return r
	case *ast.ArrayNode:
		return e.literal(n.Nodes, nil)
	case *ast.MapNode:
		keys, values := make([]ast.Node, len(n.Pairs)), make([]ast.Node, len(n.Pairs))
		for i, p := range n.Pairs {
			pair := p.(*ast.PairNode)
			keys[i], values[i] = pair.Key, pair.Value
		}
		return e.literal(values, keys)
	case *ast.BinaryNode:
		return e.binary(n)
	case *ast.CallNode:
		return e.call(n)
	case *ast.BuiltinNode:
		return e.builtin(n)
	case *ast.PredicateNode:
		return e.node(n.Node)
	}
	return e.fail(n, "%s cannot be used in persona-router expressions", clip(n))
}

// literal estimates a list literal, or a map literal of keys and values: one item per value,
// each item as large as the largest value.
func (e *estimator) literal(values, keys []ast.Node) est {
	r := est{steps: 1, mem: itemBytes * int64(len(values)), b: &bound{items: int64(len(values)), elem: &bound{}}}
	for _, k := range keys {
		r = r.plus(e.node(k))
	}
	for i, v := range values {
		x := e.node(v)
		r = r.plus(x)
		if i == 0 {
			r.b.elem = x.b
		} else {
			r.b.elem = join(r.b.elem, x.b)
		}
	}
	if r.b.elem == nil {
		r.b.elem = &bound{}
	}
	return r
}

func (e *estimator) identifier(name string) *bound {
	if b, ok := e.vars[name]; ok {
		return b
	}
	switch {
	case name == "context":
		return &bound{bytes: ContextBytes}
	case name == "metadata":
		return anyValue(ValueDepth, MetadataBytes)
	case strings.HasPrefix(name, "metadata."):
		return anyValue(ValueDepth-1, MetadataBytes)
	case name == "user":
		return anyValue(ValueDepth, ClaimsBytes)
	case strings.HasPrefix(name, "user."):
		return anyValue(ValueDepth-1, ClaimsBytes)
	case name == "rule":
		return &bound{bytes: source.MaxStringBytes}
	case name == "persona":
		return anyValue(ValueDepth, PersonaBytes)
	case strings.HasPrefix(name, "persona."):
		return anyValue(ValueDepth-1, PersonaBytes)
	}
	return nil
}

func (e *estimator) binary(n *ast.BinaryNode) est {
	if n.Operator == ".." {
		from, okFrom := constInt(n.Left)
		to, okTo := constInt(n.Right)
		if !okFrom || !okTo {
			return e.fail(n, "the range %s must have constant bounds (like 1..10), so that its length is known when the configuration loads", clip(n))
		}
		length := max(to-from+1, 0)
		if length > MaxRange {
			return e.fail(n, "the range %s has %d items, more than %d", clip(n), length, MaxRange)
		}
		return est{steps: 1 + length/8, mem: itemBytes * length, b: &bound{items: length, elem: &bound{}}}
	}
	l, r := e.node(n.Left), e.node(n.Right)
	out := l.plus(r).plus(scalar(1))
	out.b = nil
	switch n.Operator {
	case "+":
		if k := kindOf(n); k == reflect.String || k == reflect.Interface {
			out = concat(out, l.b, r.b)
		}
	case "==", "!=":
		// Lists and maps compare item by item.
		out.steps = add(out.steps, work(min(l.b.size(), r.b.size())))
	case "<", ">", "<=", ">=":
		out.steps = add(out.steps, work(min(bytesOf(l.b), bytesOf(r.b))))
	case "contains", "startsWith", "endsWith":
		out.steps = add(out.steps, work(add(bytesOf(l.b), bytesOf(r.b))))
	case "matches":
		// RE2 runs in time linear in the text times the pattern.
		out.steps = add(out.steps, work(mul(bytesOf(l.b), max(bytesOf(r.b), 1))))
	case "in":
		items := max(itemsOf(r.b), 1)
		out.steps = add(out.steps, mul(items, work(l.b.size())))
	case "??":
		out.b = join(l.b, r.b)
	}
	return out
}

// concat adds the building of a string of a + b to out.
func concat(out est, a, b *bound) est {
	return built(out, add(bytesOf(a), bytesOf(b)))
}

// built adds the building of a string of size bytes to out, and makes it out's value.
func built(out est, size int64) est {
	out.b = &bound{bytes: size}
	out.mem = add(out.mem, size)
	out.steps = add(out.steps, work(size))
	return out
}

func constInt(n ast.Node) (int64, bool) {
	switch n := n.(type) {
	case *ast.IntegerNode:
		return int64(n.Value), true
	case *ast.UnaryNode:
		if v, ok := constInt(n.Node); ok && n.Operator == "-" {
			return -v, true
		}
	}
	return 0, false
}

// call estimates the functions: bucket and sign.
func (e *estimator) call(n *ast.CallNode) est {
	switch {
	case isCallOf(n, "bucket") && len(n.Arguments) == 1:
		key := e.node(n.Arguments[0])
		out := key.plus(scalar(1))
		out.b = nil
		out.steps = add(out.steps, work(key.b.size()))
		return out
	case isCallOf(n, "sign") && (len(n.Arguments) == 1 || len(n.Arguments) == 2):
		return e.sign(n)
	}
	return e.fail(n, "%s cannot be used in persona-router expressions", clip(n))
}

// signedIDBytes is the longest user id sign() can sign: a string claim.
const signedIDBytes = min(ValueBytes, ClaimsBytes)

// sign estimates sign(url) and sign(url, ttl): the URL with the longest user id, escaped
// (each byte at most three), and the query's fixed part; the HMAC's steps; and the call with
// the names the guard adds to it (sign., signer., meter.).
func (e *estimator) sign(n *ast.CallNode) est {
	arg := e.node(n.Arguments[0])
	out := arg.plus(scalar(4))
	if len(n.Arguments) == 2 {
		out = out.plus(e.node(n.Arguments[1]))
	}
	url := bytesOf(arg.b)
	steps, mem := signCost(url, signedIDBytes)
	out.steps = add(out.steps, steps)
	out.mem = add(out.mem, mem)
	out.b = &bound{bytes: add(add(url, 3*signedIDBytes), signOverhead)}
	return out
}

// loops are the builtins that run a predicate over a collection.
var loops = map[string]bool{
	"all": true, "none": true, "any": true, "one": true, "filter": true, "map": true,
	"find": true, "findIndex": true, "findLast": true, "findLastIndex": true, "count": true,
	"sum": true, "reduce": true,
}

func (e *estimator) builtin(n *ast.BuiltinNode) est {
	if loops[n.Name] && len(n.Arguments) >= 2 {
		return e.loop(n)
	}
	out := scalar(1)
	args := make([]est, len(n.Arguments))
	for i, a := range n.Arguments {
		args[i] = e.node(a)
		out = out.plus(args[i])
	}
	out.b = nil
	first := func() *bound {
		if len(args) == 0 {
			return nil
		}
		return args[0].b
	}
	switch n.Name {
	case "len", "type", "abs", "ceil", "floor", "round", "int", "float", "now",
		"bitand", "bitor", "bitxor", "bitnand", "bitnot", "bitshl", "bitshr", "bitushr":
	case "sum", "max", "min", "mean", "median":
		out.steps = add(out.steps, itemsOf(first()))
	case "string":
		out = built(out, add(mul(first().size(), 2), 32))
	case "trim", "trimPrefix", "trimSuffix", "upper", "lower":
		out = built(out, bytesOf(first()))
	case "split", "splitAfter":
		size := bytesOf(first())
		out.b = &bound{items: size + 1, elem: &bound{bytes: size}}
		out.mem = add(out.mem, add(size, itemBytes*(size+1)))
		out.steps = add(out.steps, work(size))
	case "indexOf", "lastIndexOf", "hasPrefix", "hasSuffix", "duration", "date":
		size := int64(0)
		for _, a := range args {
			size = add(size, a.b.size())
		}
		out.steps = add(out.steps, work(size))
	case "repeat":
		count, ok := constInt(n.Arguments[1])
		if !ok {
			return e.fail(n, "repeat's count must be a constant number (like repeat(\"-\", 10)), so that its size is known when the configuration loads")
		}
		out = built(out, mul(bytesOf(first()), max(count, 0)))
	case "replace":
		s, repl := bytesOf(first()), bytesOf(args[len(args)-1].b)
		out = built(out, add(s, mul(s+1, repl)))
	case "join":
		glue := int64(0)
		if len(args) == 2 {
			glue = bytesOf(args[1].b)
		}
		list := first()
		size := mul(itemsOf(list), add(bytesOf(list.item()), glue))
		out = built(out, size)
	case "first", "last", "get":
		out.b = first().item()
	case "keys", "values":
		b := first()
		out.b = &bound{items: itemsOf(b), elem: b.item()}
		out.mem = add(out.mem, itemBytes*itemsOf(b))
		out.steps = add(out.steps, itemsOf(b))
	default:
		return e.fail(n, "%s() cannot be used in persona-router expressions (see the list of functions in docs/configuration.md)", n.Name)
	}
	return out
}

// loop estimates a builtin that runs its predicate once per item of its collection.
func (e *estimator) loop(n *ast.BuiltinNode) est {
	coll := e.node(n.Arguments[0])
	items, item := itemsOf(coll.b), coll.b.item()
	pred, ok := n.Arguments[1].(*ast.PredicateNode)
	if !ok {
		return e.fail(n, "%s needs a predicate", n.Name)
	}
	out := coll.plus(scalar(1))
	out.b = nil
	if n.Name == "reduce" {
		out.mem = add(out.mem, add(loopBytes, mul(items, iterationBytes)))
		return e.reduce(n, pred, out, items, item)
	}
	e.scopes = append(e.scopes, scope{item: item})
	body := e.node(pred)
	e.scopes = e.scopes[:len(e.scopes)-1]
	out.steps = add(out.steps, mul(items, add(body.steps, 2)))
	out.mem = add(out.mem, add(loopBytes, mul(items, add(body.mem, iterationBytes))))
	switch n.Name {
	case "filter":
		out.b = &bound{items: items, elem: item}
		out.mem = add(out.mem, itemBytes*items)
	case "map":
		out.b = &bound{items: items, elem: body.b}
		out.mem = add(out.mem, itemBytes*items)
	case "find", "findLast":
		out.b = item
	}
	return out
}

// reduce follows the accumulator's bound through the iterations: `#acc + #acc` doubles it
// each time, and is refused as soon as it would go over budget.
func (e *estimator) reduce(n *ast.BuiltinNode, pred *ast.PredicateNode, out est, items int64, item *bound) est {
	acc := item
	if len(n.Arguments) == 3 {
		init := e.node(n.Arguments[2])
		out = out.plus(init)
		acc = init.b
	}
	var prevGrowth int64 = -1
	for i := int64(0); i < items; i++ {
		e.scopes = append(e.scopes, scope{item: item, acc: acc})
		body := e.node(pred)
		e.scopes = e.scopes[:len(e.scopes)-1]
		if e.err != nil {
			return est{steps: infinite}
		}
		out.steps = add(out.steps, add(body.steps, 2))
		out.mem = add(out.mem, body.mem)
		if out.steps > MaxCost || out.mem > MaxMemory {
			return e.fail(n, "%s builds a larger accumulator with every iteration: by iteration %d of %d it is over the budget of %s per evaluation", clip(n), i+1, items, budgetText(out))
		}
		next := join(acc, body.b)
		if equalBounds(next, acc) {
			// A fixed point: every remaining iteration costs the same.
			rest := items - i - 1
			out.steps = add(out.steps, mul(rest, add(body.steps, 2)))
			out.mem = add(out.mem, mul(rest, body.mem))
			break
		}
		growth := next.size() - acc.size()
		if growth == prevGrowth && growth > 0 && i >= 2 {
			// Growing by the same amount each time: the rest follows arithmetically.
			rest := items - i - 1
			last := add(next.size(), mul(rest, growth))
			// Each later iteration copies at most the final accumulator.
			out.steps = add(out.steps, mul(rest, add(add(body.steps, 2), work(last))))
			out.mem = add(out.mem, mul(rest, add(body.mem, last)))
			acc = &bound{bytes: last, items: next.items, elem: next.elem}
			break
		}
		prevGrowth = growth
		acc = next
	}
	out.b = acc
	return out
}
