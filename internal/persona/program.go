package persona

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/persona-router/persona-router/internal/catalogue"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/jsonenc"
)

// MaxRenderedBytes bounds one rendered session-token request, so that the body sent to Anam
// stays small whatever the placeholders give: 256 KiB is eight times the longest literal a
// persona may hold (source.MaxStringBytes), and far above any real system prompt.
const MaxRenderedBytes = 256 << 10

// RenderError is a template whose rendered value is invalid or whose placeholder failed.
type RenderError struct {
	// Field is the path of the value at fault: "name", "tools[1].url".
	Field string
	Err   error
}

// Error reads "tools[1].url must use https://…" for a value the catalogue refuses, and
// "rendering systemPrompt: placeholder …" for a placeholder that failed.
func (e *RenderError) Error() string {
	if msg := e.Err.Error(); strings.HasPrefix(msg, "must ") {
		return e.Field + " " + msg
	}
	return "rendering " + e.Field + ": " + e.Err.Error()
}
func (e *RenderError) Unwrap() error { return e.Err }

// Program renders the session-token request of one route (a persona, or a rule with its
// `set`). Literal parts are encoded to JSON once, when it is compiled; rendering evaluates only
// the placeholders and checks what they give against the catalogue.
type Program struct {
	// Stateful tells a program that renders a persona saved in Anam Lab (personaId): overlays
	// leave it as it is.
	Stateful bool
	root     *op
	// size is a guess at the rendered length, so that a new body's buffer is allocated once.
	size int
}

type opKind uint8

const (
	// opLiteral is a value encoded at load.
	opLiteral opKind = iota
	// opText is a value with placeholders.
	opText
	opObject
	opList
)

// op renders one value of the request.
type op struct {
	kind  opKind
	lit   []byte
	field *catalogue.Field
	path  string
	text  *Text
	// members of an object: runs of literal members encoded together, and dynamic members.
	members []opMember
	items   []*op
	// src is the document node compiled, for the literal members an object check reads.
	src *node
	// check asks for the object's members to be checked at render, because a placeholder may
	// leave out one the catalogue requires; for a list, that its items' names be unique.
	check bool
	// must, for an object, is the error when it renders no member at all (personaConfig).
	must string
	// fallback, for a text, is the literal written when the placeholders give nothing.
	fallback []byte
}

type opMember struct {
	// chunk is one or more literal members, encoded: "a":1,"b":"x".
	chunk []byte
	// key is a dynamic member's name and its encoded `"name":`.
	key     string
	keyJSON []byte
	op      *op
}

// compileDoc compiles a merged, checked document into the program of a route whose default
// client label is label.
func compileDoc(doc *node, label string) *Program { return compile(doc, label, false) }

// CompilePatch compiles an overlay rule's set: the fields it changes, rendered as a request
// of their own (personaConfig and the session fields it gives), to merge over the request
// another rule rendered. Nothing is required of it, and no client label is added.
func CompilePatch(set *Doc) *Program { return compile(set.root, "", true) }

func compile(doc *node, label string, patch bool) *Program {
	root := &op{kind: opObject}
	pc := &op{kind: opObject, field: catalogue.PersonaConfig, src: doc, path: ""}
	for _, f := range catalogue.PersonaConfig.Fields {
		if stateful(doc) && f.Name != keyID {
			continue
		}
		if m := doc.get(f.Name); m != nil {
			pc.add(f.Name, compileNode(m))
		}
	}
	if extra := doc.get(keyExtra); extra != nil && !stateful(doc) {
		for _, m := range extra.members {
			pc.add(m.key, compileNode(m.node))
		}
	}
	if patch {
		pc.check = false
	} else {
		pc.check = needsCheck(pc)
		pc.must = "rendered no field (a placeholder gave nothing)"
		if stateful(doc) {
			pc.path, pc.must = keyID, "rendered empty or null (a stateful persona needs its personaId)"
		}
	}
	root.add("personaConfig", pc.finish())
	session := doc.get(keySession)
	if !patch && (session == nil || session.get("clientLabel") == nil) {
		root.add("clientLabel", &op{kind: opLiteral, lit: encodeJSON(label)})
	}
	if session != nil {
		for _, m := range session.members {
			if m.key == keyExtra {
				continue
			}
			v := compileNode(m.node)
			if m.key == "clientLabel" && v.kind == opText && !patch {
				v.fallback = encodeJSON(label) // a label that renders empty is the default one
			}
			root.add(m.key, v)
		}
		if extra := session.get(keyExtra); extra != nil {
			for _, m := range extra.members {
				root.add(m.key, compileNode(m.node))
			}
		}
	}
	root = root.finish()
	p := &Program{root: root, Stateful: stateful(doc)}
	p.size = root.size()
	return p
}

// compileNode compiles one value: a wholly literal value is encoded once.
func compileNode(n *node) *op {
	switch n.kind {
	case text:
		return &op{kind: opText, field: n.field, path: n.path, text: n.text}
	case object:
		o := &op{kind: opObject, field: n.field, path: n.path, src: n}
		if n.field.Kind == catalogue.Object {
			for _, f := range n.field.Fields {
				if m := n.get(f.Name); m != nil {
					o.add(f.Name, compileNode(m))
				}
			}
		} else {
			for _, m := range n.members {
				o.add(m.key, compileNode(m.node))
			}
		}
		o.check = needsCheck(o)
		return o.finish()
	case list:
		l := &op{kind: opList, field: n.field, path: n.path, src: n}
		for _, item := range n.items {
			l.items = append(l.items, compileNode(item))
			// Literal names were checked at load; only a placeholder name, or an item that is a
			// placeholder, needs checking.
			if key := n.field.UniqueBy; key != "" {
				if item.kind == text {
					l.check = true
				} else if item.kind == object && item.get(key) != nil {
					if _, literal := item.Str(key); !literal {
						l.check = true
					}
				}
			}
		}
		return l.finish()
	}
	return &op{kind: opLiteral, lit: encodeJSON(n.lit)}
}

func (o *op) add(key string, v *op) {
	o.members = append(o.members, opMember{key: key, keyJSON: append(encodeJSON(key), ':'), op: v})
}

// literal tells whether the whole value is known at load.
func (o *op) literal() bool {
	switch o.kind {
	case opLiteral:
		return true
	case opText:
		return false
	case opObject:
		for _, m := range o.members {
			if m.op != nil && !m.op.literal() {
				return false
			}
		}
		return true
	}
	for _, item := range o.items {
		if !item.literal() {
			return false
		}
	}
	return true
}

// finish encodes the literal parts of an object or list: the whole value when it is literal.
func (o *op) finish() *op {
	if o.kind == opList {
		if !o.literal() {
			return o
		}
		lit := []byte{'['}
		for i, item := range o.items {
			if i > 0 {
				lit = append(lit, ',')
			}
			lit = append(lit, item.lit...)
		}
		return &op{kind: opLiteral, lit: append(lit, ']')}
	}
	o.coalesce()
	switch {
	case len(o.members) == 0:
		return &op{kind: opLiteral, lit: []byte("{}")}
	case len(o.members) == 1 && o.members[0].chunk != nil:
		lit := append(append([]byte{'{'}, o.members[0].chunk...), '}')
		return &op{kind: opLiteral, lit: lit}
	}
	return o
}

// coalesce encodes runs of literal members into chunks.
func (o *op) coalesce() {
	var out []opMember
	for _, m := range o.members {
		if m.op == nil || m.op.kind != opLiteral {
			out = append(out, m)
			continue
		}
		enc := append(append([]byte(nil), m.keyJSON...), m.op.lit...)
		if n := len(out); n > 0 && out[n-1].chunk != nil {
			out[n-1].chunk = append(append(out[n-1].chunk, ','), enc...)
			continue
		}
		out = append(out, opMember{key: m.key, chunk: enc})
	}
	o.members = out
}

// needsCheck tells whether an object's members must be checked at render: when a dynamic
// member is one the object's rules depend on, a placeholder that gives nothing leaves it out.
func needsCheck(o *op) bool {
	f := o.field
	if f == nil || f.Kind != catalogue.Object {
		return false
	}
	for _, m := range o.members {
		if m.op == nil || m.op.literal() {
			continue
		}
		if mf := f.Member(m.key); mf != nil && mf.Required {
			return true
		}
		if contains(f.OneOf, m.key) || contains(f.Together, m.key) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (o *op) size() int {
	switch o.kind {
	case opLiteral:
		return len(o.lit)
	case opText:
		return 64
	}
	n := 2
	for _, m := range o.members {
		n += len(m.chunk) + len(m.keyJSON) + 1
		if m.op != nil {
			n += m.op.size()
		}
	}
	for _, item := range o.items {
		n += item.size() + 1
	}
	return n
}

// Render evaluates the placeholders for one request and returns the JSON body of the
// session-token request. Every value a placeholder gives is checked against the catalogue, so
// a bad value is an error naming its field, never a silently wrong request. The body's buffer
// is reused after its Release.
func (p *Program) Render(ev *expression.Evaluator) (*Body, error) {
	body := newBody()
	if err := p.render(ev, body); err != nil {
		body.Release()
		return nil, err
	}
	return body, nil
}

// render renders into body's buffer.
func (p *Program) render(ev *expression.Evaluator, body *Body) error {
	if cap(body.buf) < p.size {
		body.buf = make([]byte, 0, p.size)
	}
	scratch := scratchPool.Get().(*[]byte)
	r := renderer{ev: ev, buf: body.buf, scratch: (*scratch)[:0]}
	r.value(p.root)
	if cap(r.scratch) <= maxPooledBody {
		*scratch = r.scratch[:0]
		scratchPool.Put(scratch)
	}
	body.buf = r.buf
	if r.err == nil && len(r.buf) > MaxRenderedBytes {
		r.err = &RenderError{Field: "personaConfig", Err: fmt.Errorf("rendered to %d bytes, more than the %d KiB a request to Anam may carry", len(r.buf), MaxRenderedBytes>>10)}
	}
	return r.err
}

type renderer struct {
	ev  *expression.Evaluator
	buf []byte
	// scratch holds a text value while it is rendered and checked, before it is escaped
	// into buf.
	scratch []byte
	err     error
}

// scratchPool keeps the scratch buffers of renderers.
var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (r *renderer) fail(path string, err error) {
	if r.err == nil {
		r.err = &RenderError{Field: path, Err: err}
	}
}

// value writes o's value and reports whether there was one: a placeholder that gives nothing
// (null, or an empty string where the catalogue wants a string) leaves its field out.
func (r *renderer) value(o *op) bool {
	switch o.kind {
	case opLiteral:
		r.buf = append(r.buf, o.lit...)
		return true
	case opText:
		if r.text(o) {
			return true
		}
		if o.fallback != nil && r.err == nil {
			r.buf = append(r.buf, o.fallback...)
			return true
		}
		return false
	case opList:
		r.list(o)
		return true
	}
	return r.object(o)
}

// object writes an object. One whose placeholders all gave nothing, and that has no literal
// member, is left out like them (sessionOptions: {sessionReplay: {enableSessionReplay: null}}).
func (r *renderer) object(o *op) bool {
	r.buf = append(r.buf, '{')
	first, absent := true, false
	for _, m := range o.members {
		if r.err != nil {
			return false
		}
		mark := len(r.buf)
		if !first {
			r.buf = append(r.buf, ',')
		}
		if m.chunk != nil {
			r.buf = append(r.buf, m.chunk...)
			first = false
			continue
		}
		r.buf = append(r.buf, m.keyJSON...)
		if !r.value(m.op) {
			r.buf = r.buf[:mark]
			absent = true
			continue
		}
		first = false
	}
	r.buf = append(r.buf, '}')
	// The object's members were checked at load with every placeholder present; they need
	// checking again only when a placeholder left its member out.
	if o.check && absent && r.err == nil {
		r.checkObject(o)
	}
	if first && o.must != "" && r.err == nil {
		path := o.path
		if path == "" {
			path = "personaConfig"
		}
		r.fail(path, errors.New(o.must))
	}
	return !first
}

// checkObject checks an object's members once its placeholders are rendered, when some
// placeholder left its member out. It renders them again to see which: this is the rare path.
func (r *renderer) checkObject(o *op) {
	var rendered []string
	for _, m := range o.members {
		if m.op == nil {
			continue
		}
		mark := len(r.buf)
		if r.value(m.op) {
			rendered = append(rendered, m.key)
		}
		r.buf = r.buf[:mark]
	}
	members := renderedMembers{src: o.src, rendered: rendered}
	var present []string
	for _, m := range o.src.members {
		if o.field.Member(m.key) != nil && members.Has(m.key) {
			present = append(present, m.key)
		}
	}
	for _, p := range o.field.CheckObject(members, present) {
		path := o.path
		if p.At != "" {
			path = joinPath(o.path, p.At)
		}
		if path == "" {
			path = "personaConfig"
		}
		r.fail(path, errors.New(p.Msg+" (a placeholder rendered it empty or null)"))
		return
	}
}

// renderedMembers is an object whose literal members are always there and whose dynamic
// members are there when they rendered a value.
type renderedMembers struct {
	src      *node
	rendered []string
}

func (m renderedMembers) Has(key string) bool {
	n := m.src.get(key)
	if n == nil {
		return false
	}
	return n.kind != text || contains(m.rendered, key)
}

func (m renderedMembers) Str(key string) (string, bool) { return m.src.Str(key) }

func (r *renderer) list(o *op) {
	r.buf = append(r.buf, '[')
	var names map[string]int
	for i, item := range o.items {
		if r.err != nil {
			return
		}
		if i > 0 {
			r.buf = append(r.buf, ',')
		}
		start := len(r.buf)
		if !r.value(item) {
			r.fail(fmt.Sprintf("%s[%d]", o.path, i), errors.New("rendered null or empty (a list item must be a value)"))
			return
		}
		if o.check {
			name, ok := itemKey(r.buf[start:], item, o.field.UniqueBy)
			if !ok {
				continue
			}
			if names == nil {
				names = make(map[string]int, len(o.items))
			}
			if j, dup := names[name]; dup {
				r.fail(fmt.Sprintf("%s[%d].%s", o.path, i, o.field.UniqueBy), fmt.Errorf("%q is already the %s of %s[%d] (%s names must be unique within a persona)", name, o.field.UniqueBy, o.path, j, o.field.Items.Name))
				return
			}
			names[name] = i
		}
	}
	r.buf = append(r.buf, ']')
}

// itemKey returns the value of member key of a rendered list item. It is called only for lists
// where some item's key is a placeholder, which is rare: it decodes what was rendered.
func itemKey(rendered []byte, item *op, key string) (string, bool) {
	if item.kind == opObject && item.src != nil {
		if s, ok := item.src.Str(key); ok {
			return s, true
		}
	}
	var m map[string]any
	if json.Unmarshal(rendered, &m) != nil {
		return "", false
	}
	s, ok := m[key].(string)
	return s, ok
}

// text renders a value with placeholders, and checks it against its field.
func (r *renderer) text(o *op) bool {
	f := o.field
	prog, single := o.text.Single()
	if f.Kind == catalogue.String || !single {
		var err error
		mark := len(r.scratch)
		r.scratch, err = o.text.Append(r.scratch, r.ev)
		text := r.scratch[mark:]
		defer func() { r.scratch = r.scratch[:mark] }()
		if err != nil {
			r.fail(o.path, err)
			return false
		}
		if len(text) == 0 && f.Kind == catalogue.String {
			return false
		}
		// The view is read only while r.scratch is not written, and checks copy what they
		// quote in a message.
		s := unsafe.String(unsafe.SliceData(text), len(text))
		if f.Kind == catalogue.String {
			if msg := f.CheckString(s); msg != "" {
				r.fail(o.path, errors.New(msg))
				return false
			}
		}
		r.buf = jsonenc.AppendString(r.buf, s)
		return true
	}
	v, err := r.ev.Eval(prog)
	if err != nil {
		r.fail(o.path, fmt.Errorf("placeholder {{ %s }}: %w", prog.Source().String(), err))
		return false
	}
	if v == nil {
		return false
	}
	switch f.Kind {
	case catalogue.Integer, catalogue.Number, catalogue.Boolean:
		if msg := f.CheckScalar(v); msg != "" {
			r.fail(o.path, fmt.Errorf("%s (placeholder {{ %s }})", msg, prog.Source().String()))
			return false
		}
		r.buf = appendScalar(r.buf, v)
		return true
	}
	if problems := f.Validate(v, catalogue.CheckJSONSchema); len(problems) > 0 {
		p := problems[0]
		r.fail(joinPathIndex(o.path, p.At), fmt.Errorf("%s (placeholder {{ %s }})", p.Msg, prog.Source().String()))
		return false
	}
	b, err := json.Marshal(v)
	if err != nil {
		r.fail(o.path, fmt.Errorf("placeholder {{ %s }} gives a value that cannot be sent as JSON: %w", prog.Source().String(), err))
		return false
	}
	r.buf = append(r.buf, b...)
	return true
}

// joinPathIndex joins a path and a sub-path that may start with an index ("[1].url").
func joinPathIndex(path, sub string) string {
	switch {
	case sub == "":
		return path
	case sub[0] == '[':
		return path + sub
	}
	return joinPath(path, sub)
}

// appendScalar appends a number or boolean as JSON. Integral numbers are written without a
// fraction, as an Integer field needs.
func appendScalar(b []byte, v any) []byte {
	switch v := v.(type) {
	case bool:
		return strconv.AppendBool(b, v)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return strconv.AppendInt(b, int64(v), 10)
		}
		return strconv.AppendFloat(b, v, 'g', -1, 64)
	}
	return append(b, "null"...)
}

// encodeJSON encodes a value known at load.
func encodeJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Documents hold only strings, numbers, booleans, maps and lists.
		panic(fmt.Sprintf("persona: encoding %T: %v", v, err))
	}
	return b
}
