package config

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"

	"github.com/persona-router/persona-router/internal/expression"
)

// DefaultDiffUsers is how many users a diff simulates per context when not told.
const DefaultDiffUsers = 1000

// DiffRequest is one request a diff routes through both configurations.
type DiffRequest struct {
	// Source says where the request comes from: a rule test, or a line of a requests file.
	Source string
	Input  expression.Input
	// test names the rule test the request is from; "" for others.
	test string
}

// id tells one source from another: a rule test by its name, whichever configuration holds it.
func (r DiffRequest) id() string {
	if r.test != "" {
		return "test " + r.test
	}
	return r.Source
}

// ConfigDiff is what changes between two configurations: what `persona-router diff` prints.
type ConfigDiff struct {
	Base string `json:"base"`
	Head string `json:"head"`
	// Requests counts the distinct requests routed through both.
	Requests int `json:"requests"`
	// Contexts lists the contexts whose split was simulated, with Users users each.
	Contexts []string `json:"contexts"`
	Users    int      `json:"users"`
	// ChangedRequests lists the requests whose outcome differs, in the order they were given.
	ChangedRequests []RequestChange `json:"changedRequests"`
	// ChangedSplits lists the contexts whose split differs, sorted.
	ChangedSplits []SplitChange `json:"changedSplits"`
}

// Changed tells whether anything differs.
func (d *ConfigDiff) Changed() bool { return len(d.ChangedRequests) > 0 || len(d.ChangedSplits) > 0 }

// RequestChange is one request whose outcome differs.
type RequestChange struct {
	// Sources lists where the request comes from (one request may be several tests').
	Sources  []string       `json:"sources"`
	Context  string         `json:"context"`
	Metadata map[string]any `json:"metadata"`
	User     map[string]any `json:"user"`
	Changes  []FieldChange  `json:"changes"`
}

// FieldChange is one value that differs. Path is "refused", "persona", "rule", "overlays",
// "error" (rendering failed), "request" (the whole request, when one side has none), or a JSON
// path into the rendered session-token request, such as
// personaConfig.voiceDetectionOptions.endOfSpeechSensitivity or personaConfig.tools[1].url.
// Base or Head is left out when that side has no such value.
type FieldChange struct {
	Path string          `json:"path"`
	Base json.RawMessage `json:"base,omitempty"`
	Head json.RawMessage `json:"head,omitempty"`
}

// SplitChange is one context whose traffic split differs.
type SplitChange struct {
	Context string        `json:"context"`
	Changes []ShareChange `json:"changes"`
}

// ShareChange is one rule, persona or overlay that serves a different number of the simulated
// users. Name is null for the default rule; Base or Head is null when that side has none.
type ShareChange struct {
	Kind string  `json:"kind"`
	Name *string `json:"name"`
	Base *Share  `json:"base"`
	Head *Share  `json:"head"`
}

// Share is a number of users and its percentage of all those simulated.
type Share struct {
	Users int     `json:"users"`
	Share float64 `json:"share"`
}

// Diff routes every rule-test request of both configurations and the given requests through
// both, and simulates users (DefaultDiffUsers when 0) in every context those requests name, and
// reports what differs. Signed URLs' exp and sig query parameters are left out of the
// comparison: they change from one call to the next.
func Diff(ctx context.Context, base, head *Snapshot, requests []DiffRequest, users int) (*ConfigDiff, error) {
	if users == 0 {
		users = DefaultDiffUsers
	}
	d := &ConfigDiff{Base: base.Version, Head: head.Version, Users: users, Contexts: []string{}, ChangedRequests: []RequestChange{}, ChangedSplits: []SplitChange{}}
	var all []DiffRequest
	for _, snap := range []*Snapshot{base, head} {
		for _, t := range snap.TestRequests() {
			all = append(all, DiffRequest{Source: fmt.Sprintf("test %q (%s)", t.Name, t.Pos), Input: t.Input, test: t.Name})
		}
	}
	all = append(all, requests...)
	type group struct {
		sources []string
		// seen holds the tests and lines already in sources: a test both configurations have
		// is listed once, at its place in the base.
		seen map[string]bool
		in   expression.Input
	}
	var groups []*group
	byKey := make(map[string]*group)
	contexts := make(map[string]bool)
	for _, r := range all {
		r.Input.Metadata, r.Input.User = orEmpty(r.Input.Metadata), orEmpty(r.Input.User)
		key, err := json.Marshal([]any{r.Input.Context, r.Input.Metadata, r.Input.User})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.Source, err)
		}
		g, ok := byKey[string(key)]
		if !ok {
			g = &group{in: r.Input, seen: make(map[string]bool)}
			byKey[string(key)] = g
			groups = append(groups, g)
		}
		if id := r.id(); !g.seen[id] {
			g.seen[id] = true
			g.sources = append(g.sources, r.Source)
		}
		contexts[r.Input.Context] = true
	}
	d.Requests = len(groups)
	for _, g := range groups {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		changes := compareOutcomes(outcomeOf(base, g.in), outcomeOf(head, g.in))
		if len(changes) > 0 {
			d.ChangedRequests = append(d.ChangedRequests, RequestChange{Sources: g.sources, Context: g.in.Context,
				Metadata: g.in.Metadata, User: g.in.User, Changes: changes})
		}
	}
	for _, c := range slices.Sorted(maps.Keys(contexts)) {
		b, berr := base.Split(ctx, SplitInput{Context: c, Users: users})
		h, herr := head.Split(ctx, SplitInput{Context: c, Users: users})
		var invalid *InvalidInput
		if errors.As(berr, &invalid) || errors.As(herr, &invalid) {
			continue // a context the token endpoint refuses: its requests show the refusal
		}
		if err := errors.Join(berr, herr); err != nil {
			return nil, err
		}
		d.Contexts = append(d.Contexts, c)
		if changes := compareSplits(b, h); len(changes) > 0 {
			d.ChangedSplits = append(d.ChangedSplits, SplitChange{Context: c, Changes: changes})
		}
	}
	return d, nil
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// outcome is what one configuration does with one request.
type outcome struct {
	refused  any
	persona  any
	rule     any
	overlays any
	err      any
	request  any
}

func outcomeOf(s *Snapshot, in expression.Input) outcome {
	if invalid := s.checkInput(in.Context, orEmpty(in.Metadata)); invalid != nil {
		return outcome{refused: invalid.Code + ": " + invalid.Error()}
	}
	res := s.Decide(in, false)
	defer res.Release()
	o := outcome{persona: res.Persona}
	if res.Rule != nil {
		o.rule = res.Rule.Name
	}
	overlays := []any{}
	for _, r := range res.Overlays {
		overlays = append(overlays, r.Name)
	}
	o.overlays = overlays
	if res.Err != nil {
		o.err = res.Err.Error()
		return o
	}
	dec := json.NewDecoder(bytes.NewReader(res.Request()))
	dec.UseNumber()            // compare numbers as written, not as rounded floats
	_ = dec.Decode(&o.request) // rendered by us: always a JSON object
	o.request = normalise(o.request)
	return o
}

// signedParams matches the value of a signed URL's exp and sig query parameters.
var signedParams = regexp.MustCompile(`([?&](?:exp|sig)=)[^&#]*`)

// normalise blanks the exp and sig values of signed URLs, wherever they are.
func normalise(v any) any {
	switch v := v.(type) {
	case string:
		return signedParams.ReplaceAllString(v, "${1}…")
	case map[string]any:
		for k, x := range v {
			v[k] = normalise(x)
		}
	case []any:
		for i, x := range v {
			v[i] = normalise(x)
		}
	}
	return v
}

// absent stands for a value one side does not have.
var absent = new(int)

func compareOutcomes(b, h outcome) []FieldChange {
	var out []FieldChange
	for _, f := range []struct {
		path string
		b, h any
	}{{"refused", b.refused, h.refused}, {"persona", b.persona, h.persona}, {"rule", b.rule, h.rule},
		{"overlays", b.overlays, h.overlays}, {"error", b.err, h.err}} {
		out = compareValues(f.path, orAbsent(f.b), orAbsent(f.h), out)
	}
	if b.request == nil || h.request == nil {
		// Refused, or not rendered, on one side: the whole request is the change.
		return compareValues("request", orAbsent(b.request), orAbsent(h.request), out)
	}
	return compareTree("", b.request, h.request, out)
}

// orAbsent is v, or absent when nil: a decision field that is nil is not there (the rule of
// the default, the persona of a refused request).
func orAbsent(v any) any {
	if v == nil {
		return absent
	}
	return v
}

// compareTree compares two rendered values field by field: objects key by key, lists item by
// item; anything else, or values of different kinds, as a whole.
func compareTree(path string, b, h any, out []FieldChange) []FieldChange {
	bm, bok := b.(map[string]any)
	hm, hok := h.(map[string]any)
	if bok && hok {
		keys := slices.Sorted(maps.Keys(bm))
		for k := range hm {
			if _, ok := bm[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			bv, ok := bm[k]
			if !ok {
				bv = absent
			}
			hv, ok := hm[k]
			if !ok {
				hv = absent
			}
			p := k
			if path != "" {
				p = path + "." + k
			}
			out = compareTree(p, bv, hv, out)
		}
		return out
	}
	bl, bok := b.([]any)
	hl, hok := h.([]any)
	if bok && hok {
		for i := range max(len(bl), len(hl)) {
			var bv, hv any = absent, absent
			if i < len(bl) {
				bv = bl[i]
			}
			if i < len(hl) {
				hv = hl[i]
			}
			out = compareTree(path+"["+strconv.Itoa(i)+"]", bv, hv, out)
		}
		return out
	}
	return compareValues(path, b, h, out)
}

func compareValues(path string, b, h any, out []FieldChange) []FieldChange {
	bj, hj := jsonOf(b), jsonOf(h)
	if bytes.Equal(bj, hj) {
		return out
	}
	return append(out, FieldChange{Path: path, Base: bj, Head: hj})
}

// jsonOf is v as JSON, nil for absent.
func jsonOf(v any) json.RawMessage {
	if v == absent {
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // decoded from JSON, or strings: always encodes
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func compareSplits(b, h *Split) []ShareChange {
	var out []ShareChange
	ruleShares := func(sp *Split) (map[string]Share, []string) {
		m := make(map[string]Share)
		var order []string
		for _, list := range [][]RuleShare{sp.Rules, sp.Overlays} {
			for _, r := range list {
				name := "\x00default" // no rule name is empty
				if r.Rule != nil {
					name = *r.Rule
				}
				m[name] = Share{Users: r.Users, Share: r.Share}
				order = append(order, name)
			}
		}
		return m, order
	}
	kind := func(sp *Split, name string) string {
		if slices.ContainsFunc(sp.Overlays, func(r RuleShare) bool { return *r.Rule == name }) {
			return "overlay"
		}
		return "rule"
	}
	bm, border := ruleShares(b)
	hm, horder := ruleShares(h)
	for _, name := range unionInOrder(border, horder) {
		bs, bok := bm[name]
		hs, hok := hm[name]
		if bok && hok && bs.Users == hs.Users {
			continue
		}
		c := ShareChange{Kind: kind(h, name)}
		if !hok {
			c.Kind = kind(b, name)
		}
		if name != "\x00default" {
			c.Name = &name
		}
		if bok {
			c.Base = &bs
		}
		if hok {
			c.Head = &hs
		}
		out = append(out, c)
	}
	personaShares := func(sp *Split) (map[string]Share, []string) {
		m := make(map[string]Share)
		var order []string
		for _, p := range sp.Personas {
			m[p.Persona] = Share{Users: p.Users, Share: p.Share}
			order = append(order, p.Persona)
		}
		return m, order
	}
	bm, border = personaShares(b)
	hm, horder = personaShares(h)
	for _, name := range unionInOrder(border, horder) {
		bs, bok := bm[name]
		hs, hok := hm[name]
		if bok && hok && bs.Users == hs.Users {
			continue
		}
		c := ShareChange{Kind: "persona", Name: &name}
		if bok {
			c.Base = &bs
		}
		if hok {
			c.Head = &hs
		}
		out = append(out, c)
	}
	return out
}

// unionInOrder lists a's items, then b's that a does not have.
func unionInOrder(a, b []string) []string {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// maxRequestLine bounds one line of a requests file: a request body is at most 64 KiB and a
// user's claims 16 KiB.
const maxRequestLine = 128 << 10

// ReadRequests reads a requests file: one JSON object {"context", "metadata", "user"} per line
// (all optional; blank lines are skipped). name is the file's name, for sources and errors.
func ReadRequests(name string, r io.Reader) ([]DiffRequest, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxRequestLine)
	var out []DiffRequest
	line := 1
	for ; sc.Scan(); line++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		var req struct {
			Context  *string        `json:"context"`
			Metadata map[string]any `json:"metadata"`
			User     map[string]any `json:"user"`
		}
		dec := json.NewDecoder(bytes.NewReader(text))
		dec.DisallowUnknownFields()
		err := dec.Decode(&req)
		if err == nil && dec.More() {
			err = errors.New("more than one JSON value on the line")
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: expected one JSON object {\"context\", \"metadata\", \"user\"} per line: %w", name, line, err)
		}
		in := expression.Input{Metadata: orEmpty(req.Metadata), User: orEmpty(req.User)}
		if req.Context != nil {
			in.Context = *req.Context
		}
		out = append(out, DiffRequest{Source: name + ":" + strconv.Itoa(line), Input: in})
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		return nil, fmt.Errorf("%s:%d: the line is over %d KiB", name, line, maxRequestLine>>10)
	} else if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return out, nil
}
