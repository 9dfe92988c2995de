package config

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/rules"
	"github.com/persona-router/persona-router/internal/source"
)

// Bounds of a traffic-split simulation.
const (
	// DefaultSplitUsers is how many users a split simulates when not told.
	DefaultSplitUsers = 10_000
	// MaxSplitUsers bounds a simulation: each user is one decision and one rendering.
	MaxSplitUsers = 100_000
	// saltUsers is how many users SaltWarnings simulates to measure an overlap.
	saltUsers = 10_000
)

// CodeBucketOverlap is the diagnostic code of SaltWarnings' warnings.
const CodeBucketOverlap = "bucket-overlap"

// Split is how a population of signed-in users divides among the rules, personas and overlays
// of one context: what `persona-router split` prints and `POST /admin/split` answers.
type Split struct {
	Context       string         `json:"context"`
	Metadata      map[string]any `json:"metadata"`
	Users         int            `json:"users"`
	ConfigVersion string         `json:"configVersion"`
	// Rules lists the rules that can pick the persona for the context, in decision order, then
	// the default (rule null).
	Rules []RuleShare `json:"rules"`
	// Personas lists the personas rendered, by users, most first.
	Personas []PersonaShare `json:"personas"`
	// Overlays lists the overlay rules tried for the context, in decision order.
	Overlays []RuleShare `json:"overlays"`
	// RenderErrors counts the users whose persona could not be rendered; RenderError is the
	// first such error.
	RenderErrors int    `json:"renderErrors"`
	RenderError  string `json:"renderError,omitempty"`
}

// RuleShare is the users one rule (or the default, Rule null) served.
type RuleShare struct {
	Rule    *string `json:"rule"`
	Persona string  `json:"persona,omitempty"`
	Users   int     `json:"users"`
	// Share is Users as a percentage of all the users simulated.
	Share float64 `json:"share"`
	// Reached counts the users for whom the rule was tried: no rule before it picked a
	// persona. ShareOfReached is Users as a percentage of them.
	Reached        int     `json:"reached"`
	ShareOfReached float64 `json:"shareOfReached"`
	// Buckets lists the percentages the rule's `when` writes as bucket(...) comparisons.
	Buckets []BucketCondition `json:"buckets,omitempty"`
	// Failed counts the users for whom `when` failed at run time (counted as not matched).
	Failed int `json:"failed,omitempty"`
}

// PersonaShare is the users one persona served.
type PersonaShare struct {
	Persona string  `json:"persona"`
	Users   int     `json:"users"`
	Share   float64 `json:"share"`
}

// BucketCondition is a comparison of bucket(key) with a number, a top-level conjunct of a
// rule's `when`: the percentage rollout it writes.
type BucketCondition struct {
	// Condition is the comparison as written (re-printed from its syntax tree).
	Condition string `json:"condition"`
	Key       string `json:"key"`
	// Nominal is the percentage of bucket values (0–99) the comparison admits: the share of
	// the users reaching the rule it selects, whatever else `when` asks.
	Nominal float64 `json:"nominal"`

	// op and limit are the comparison, as bucket(key) op limit.
	op    string
	limit float64
}

// InvalidInput is a split whose context or metadata the token endpoint would refuse, or whose
// number of users is out of bounds. Code is the token endpoint's error code for it:
// invalid_request or invalid_metadata.
type InvalidInput struct {
	Code string
	Err  error
}

func (e *InvalidInput) Error() string { return e.Err.Error() }

func (e *InvalidInput) Unwrap() error { return e.Err }

// SplitInput is what a split simulates.
type SplitInput struct {
	Context  string
	Metadata map[string]any
	Users    int
	// UserID gives the id of user i (from 0); nil gives "u-<i>".
	UserID func(i int) (string, error)
}

// Split runs in.Users distinct signed-in users, {"id": "u-0"} … (or the ids in.UserID gives),
// through the decision for one context and metadata, and counts where they go. The context
// and metadata must pass the token endpoint's checks. When ctx ends, it stops and returns
// ctx's error.
func (s *Snapshot) Split(ctx context.Context, in SplitInput) (*Split, error) {
	if in.Users < 1 || in.Users > MaxSplitUsers {
		return nil, &InvalidInput{Code: "invalid_request", Err: fmt.Errorf("users must be from 1 to %d, got %d", MaxSplitUsers, in.Users)}
	}
	if in.Metadata == nil {
		in.Metadata = map[string]any{}
	}
	if err := s.checkInput(in.Context, in.Metadata); err != nil {
		return nil, err
	}
	candidates := s.Candidates(in.Context)
	// counts holds, by rule order, the users each candidate served; the default is last.
	counts := make(map[*rules.Rule]*RuleShare, len(candidates))
	sp := &Split{Context: in.Context, Metadata: in.Metadata, Users: in.Users, ConfigVersion: s.Version}
	for _, r := range candidates {
		name := r.Name
		share := RuleShare{Rule: &name, Buckets: bucketConditions(r.When)}
		if !r.Overlay {
			share.Persona = r.Persona
		}
		counts[r] = &share
	}
	fallback := RuleShare{Persona: s.DefaultPersona()}
	personas := make(map[string]int)
	var seen map[string]int
	if in.UserID != nil {
		seen = make(map[string]int, in.Users)
	}
	for i := range in.Users {
		if i%1000 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		id := "u-" + strconv.Itoa(i)
		if in.UserID != nil {
			var err error
			if id, err = in.UserID(i); err != nil {
				return nil, fmt.Errorf("user key of user %d: %w", i, err)
			}
			if j, dup := seen[id]; dup {
				return nil, fmt.Errorf("the user key gives %q for both user %d and user %d: the simulated users must be distinct", id, j, i)
			}
			seen[id] = i
		}
		res := s.Decide(expression.Input{Context: in.Context, Metadata: in.Metadata, User: map[string]any{"id": id}}, false)
		res.Release()
		if res.Err != nil {
			if sp.RenderErrors == 0 {
				sp.RenderError = res.Err.Error()
			}
			sp.RenderErrors++
		}
		personas[res.Persona]++
		for _, r := range candidates {
			// Overlays are tried for every request; another rule only until one picks.
			if r.Overlay || res.Rule == nil || r.Order <= res.Rule.Order {
				counts[r].Reached++
			}
		}
		if res.Rule == nil {
			fallback.Reached++
			fallback.Users++
		} else {
			counts[res.Rule].Users++
		}
		for _, o := range res.Overlays {
			counts[o].Users++
		}
		for _, f := range res.Failed {
			counts[f.Rule].Failed++
		}
	}
	for _, r := range candidates {
		share := counts[r]
		share.finish(in.Users)
		if r.Overlay {
			sp.Overlays = append(sp.Overlays, *share)
		} else {
			sp.Rules = append(sp.Rules, *share)
		}
	}
	fallback.finish(in.Users)
	sp.Rules = append(sp.Rules, fallback)
	for id, n := range personas {
		sp.Personas = append(sp.Personas, PersonaShare{Persona: id, Users: n, Share: percent(n, in.Users)})
	}
	slices.SortFunc(sp.Personas, func(a, b PersonaShare) int {
		if a.Users != b.Users {
			return b.Users - a.Users
		}
		return strings.Compare(a.Persona, b.Persona)
	})
	if sp.Overlays == nil {
		sp.Overlays = []RuleShare{}
	}
	return sp, nil
}

// checkInput applies the token endpoint's checks of a request's context and metadata, as
// explain does (Refusal).
func (s *Snapshot) checkInput(context string, metadata map[string]any) *InvalidInput {
	if r := s.Refusal(expression.Input{Context: context, Metadata: metadata}); r != nil {
		return &InvalidInput{Code: r.Code, Err: errors.New(r.Error)}
	}
	return nil
}

func (r *RuleShare) finish(total int) {
	r.Share = percent(r.Users, total)
	r.ShareOfReached = percent(r.Users, r.Reached)
}

// percent is n of total as a percentage, to two decimals; 0 of nothing is 0.
func percent(n, total int) float64 {
	if total == 0 {
		return 0
	}
	return math.Round(float64(n)*10000/float64(total)) / 100
}

// bucketConditions finds the bucket(key) comparisons with a number among the top-level
// conjuncts of a `when`, as in `context == "sales" && bucket(user.id + ":v2") < 20`: those
// are percentage rollouts. A comparison under || or ! is not a rollout of the whole rule, and
// is left out.
func bucketConditions(when string) []BucketCondition {
	tree, err := parser.Parse(when)
	if err != nil {
		return nil // it compiled when the configuration loaded; nothing to find otherwise
	}
	var out []BucketCondition
	for _, n := range conjuncts(tree.Node) {
		if c, ok := bucketComparison(n); ok {
			out = append(out, c)
		}
	}
	return out
}

func conjuncts(n ast.Node) []ast.Node {
	if b, ok := n.(*ast.BinaryNode); ok && (b.Operator == "&&" || b.Operator == "and") {
		return append(conjuncts(b.Left), conjuncts(b.Right)...)
	}
	return []ast.Node{n}
}

// flipped turns `N op bucket(k)` into `bucket(k) flipped[op] N`.
var flipped = map[string]string{"<": ">", "<=": ">=", ">": "<", ">=": "<="}

func bucketComparison(node ast.Node) (BucketCondition, bool) {
	b, ok := node.(*ast.BinaryNode)
	if !ok || flipped[b.Operator] == "" {
		return BucketCondition{}, false
	}
	op, call, limit := b.Operator, b.Left, b.Right
	if _, isCall := bucketKey(call); !isCall {
		op, call, limit = flipped[op], b.Right, b.Left
	}
	key, isCall := bucketKey(call)
	n, isNumber := number(limit)
	if !isCall || !isNumber {
		return BucketCondition{}, false
	}
	c := BucketCondition{Condition: b.String(), Key: key, op: op, limit: n}
	for v := range 100 {
		if c.admits(v) {
			c.Nominal++
		}
	}
	return c, true
}

// admits tells whether the bucket value v passes the comparison.
func (c BucketCondition) admits(v int) bool {
	x := float64(v)
	switch c.op {
	case "<":
		return x < c.limit
	case "<=":
		return x <= c.limit
	case ">":
		return x > c.limit
	}
	return x >= c.limit
}

// bucketKey returns the source of k in bucket(k).
func bucketKey(n ast.Node) (string, bool) {
	c, ok := n.(*ast.CallNode)
	if !ok || len(c.Arguments) != 1 {
		return "", false
	}
	if id, ok := c.Callee.(*ast.IdentifierNode); !ok || id.Value != "bucket" {
		return "", false
	}
	return c.Arguments[0].String(), true
}

func number(n ast.Node) (float64, bool) {
	switch n := n.(type) {
	case *ast.IntegerNode:
		return float64(n.Value), true
	case *ast.FloatNode:
		return n.Value, true
	}
	return 0, false
}

// UserKey compiles a --user-key expression: the id of user i (from 0), such as
// `"cust-" + string(i)`. It may use only i, string and integer literals, + - * %, and the
// functions string, upper and lower, so that whatever is written, each evaluation is a
// handful of steps and its result no longer than the expression with i's digits in it.
func UserKey(src string) (func(i int) (string, error), error) {
	const maxLen = 200
	if len(src) > maxLen {
		return nil, fmt.Errorf("the user key is over %d characters", maxLen)
	}
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("the user key %q does not parse: %w", src, err)
	}
	var bad ast.Node
	ast.Walk(&tree.Node, userKeyVisitor(func(n ast.Node) {
		if bad == nil && !userKeyNode(n) {
			bad = n
		}
	}))
	if bad != nil {
		return nil, fmt.Errorf("the user key may use only i, string and integer literals, + - * %% and the functions %s; not %s", strings.Join(userKeyFunctions, ", "), bad.String())
	}
	prog, err := expr.Compile(src, expr.Env(map[string]any{"i": 0}), expr.AsKind(reflect.String))
	if err != nil {
		return nil, fmt.Errorf("the user key %q: %w", src, err)
	}
	return func(i int) (string, error) {
		out, err := vm.Run(prog, map[string]any{"i": i})
		if err != nil {
			return "", err
		}
		return out.(string), nil // AsKind(reflect.String) guarantees it
	}, nil
}

var userKeyFunctions = []string{"string", "upper", "lower"}

func userKeyNode(n ast.Node) bool {
	switch n := n.(type) {
	case *ast.IdentifierNode:
		return n.Value == "i"
	case *ast.IntegerNode, *ast.StringNode:
		return true
	case *ast.BinaryNode:
		return slices.Contains([]string{"+", "-", "*", "%"}, n.Operator)
	case *ast.BuiltinNode:
		return slices.Contains(userKeyFunctions, n.Name) && len(n.Arguments) == 1
	}
	return false
}

type userKeyVisitor func(ast.Node)

func (f userKeyVisitor) Visit(n *ast.Node) { f(*n) }

// SaltWarnings reports rules that a rule tried before them for the same context cuts short
// because both roll out by bucket() but with different keys: independent keys overlap, so the
// earlier rule takes its percentage of the later rule's users too (a 30% test before a 20%
// one leaves the 20% one 14%). Each warning says how far the later rule shrinks, measured by
// evaluating the rules' bucket conditions for 10,000 simulated users u-0 … u-9999. Overlays
// pick no persona and shrink nothing, and are left out.
func SaltWarnings(snap *Snapshot) source.Errors {
	var warnings source.Errors
	warned := make(map[*rules.Rule]bool)
	lists := make([][]*rules.Rule, 0, len(snap.Contexts())+1)
	names := make([]string, 0, cap(lists))
	for _, c := range snap.Contexts() {
		lists, names = append(lists, snap.Candidates(c)), append(names, fmt.Sprintf("context %q", c))
	}
	lists, names = append(lists, snap.Unrestricted()), append(names, "contexts no rule names")
	for i, list := range lists {
		var rollouts []*rollout
		for _, r := range list {
			if r.Overlay {
				continue
			}
			if conds := bucketConditions(r.When); len(conds) > 0 {
				rollouts = append(rollouts, &rollout{rule: r, conds: conds})
			}
		}
		for j, later := range rollouts {
			if warned[later.rule] {
				continue
			}
			var earlier []*rollout
			for _, e := range rollouts[:j] {
				if !slices.Equal(e.keys(), later.keys()) {
					earlier = append(earlier, e)
				}
			}
			if len(earlier) == 0 {
				continue
			}
			warned[later.rule] = true
			warnings.Add(saltWarning(later, earlier, names[i]))
		}
	}
	return warnings
}

// rollout is a rule with bucket conditions.
type rollout struct {
	rule  *rules.Rule
	conds []BucketCondition
	progs []*vm.Program
}

// Rollout is the percentage of users the rule's bucket conditions select together (a range
// such as bucket(k) >= 50 && bucket(k) < 70 is 20%), with the conditions as written; ok is
// false for a rule without any.
func (r RuleShare) Rollout() (conditions string, nominal float64, ok bool) {
	if len(r.Buckets) == 0 {
		return "", 0, false
	}
	parts := make([]string, len(r.Buckets))
	for i, b := range r.Buckets {
		parts[i] = b.Condition
	}
	ro := rollout{conds: r.Buckets}
	return strings.Join(parts, " && "), ro.nominal(), true
}

// keys lists the rule's bucket keys, sorted, once each.
func (r *rollout) keys() []string {
	var keys []string
	for _, c := range r.conds {
		keys = append(keys, c.Key)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// nominal is the percentage of users the rule's bucket conditions select: per key, the bucket
// values all its conditions admit; keys are independent of each other.
func (r *rollout) nominal() float64 {
	share := 1.0
	for _, k := range r.keys() {
		admitted := 0
		for v := range 100 {
			all := true
			for _, c := range r.conds {
				if c.Key == k {
					all = all && c.admits(v)
				}
			}
			if all {
				admitted++
			}
		}
		share *= float64(admitted) / 100
	}
	return math.Round(share*10000) / 100
}

func saltWarning(later *rollout, earlier []*rollout, where string) *source.Error {
	c := expression.NewCompiler()
	var failed error
	compile := func(r *rollout) {
		for _, cond := range r.conds {
			p, err := c.Compile(cond.Condition)
			if err != nil && failed == nil {
				failed = err
			}
			r.progs = append(r.progs, p)
		}
	}
	compile(later)
	for _, e := range earlier {
		compile(e)
	}
	var before []string
	for _, e := range earlier {
		var conds []string
		for _, cond := range e.conds {
			conds = append(conds, cond.Condition)
		}
		before = append(before, fmt.Sprintf("%q (%s, at %s)", e.rule.Name, strings.Join(conds, " && "), e.rule.Pos))
	}
	var own []string
	for _, cond := range later.conds {
		own = append(own, cond.Condition)
	}
	head := fmt.Sprintf("rule %q rolls out by %s, but in %s rule %s is tried first with a different bucket key: independent keys overlap",
		later.rule.Name, strings.Join(own, " && "), where, strings.Join(before, " and "))
	if failed != nil {
		e := source.Errorf(later.rule.Pos, "%s (the overlap could not be measured: %v)", head, failed)
		e.Code = CodeBucketOverlap
		return e
	}
	layout := c.Layout()
	holds := func(r *rollout, ev *expression.Evaluator) (bool, error) {
		for _, p := range r.progs {
			out, err := ev.Eval(p)
			if err != nil {
				return false, err
			}
			if b, _ := out.(bool); !b {
				return false, nil
			}
		}
		return true, nil
	}
	kept := 0
	for i := range saltUsers {
		ev := expression.Acquire(expression.Input{User: map[string]any{"id": "u-" + strconv.Itoa(i)}}, layout)
		ok, err := holds(later, ev)
		for _, e := range earlier {
			if !ok || err != nil {
				break
			}
			var taken bool
			taken, err = holds(e, ev)
			ok = !taken
		}
		ev.Release()
		if err != nil {
			e := source.Errorf(later.rule.Pos, "%s (the overlap could not be measured for user u-%d: %v)", head, i, err)
			e.Code = CodeBucketOverlap
			return e
		}
		if ok {
			kept++
		}
	}
	e := source.Errorf(later.rule.Pos, "%s, so it gets %.1f%% of users, not %g%% (measured over %d simulated users; to keep rollouts apart, give them one key and disjoint ranges: bucket(k) < 30, then bucket(k) >= 30 && bucket(k) < 50)",
		head, percent(kept, saltUsers), later.nominal(), saltUsers)
	e.Code = CodeBucketOverlap
	return e
}
