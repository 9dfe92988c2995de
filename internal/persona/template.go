// Package persona reads persona templates — what Anam is asked to show and say — and renders
// them for one request.
package persona

import (
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/persona-router/persona-router/internal/catalogue"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/source"
)

// DefaultID is the template used when no rule matches; it must exist.
const DefaultID = "default"

// Template is one persona file. Its id is the file name without extension.
type Template struct {
	ID   string
	Path string
	// Extends names the template this one inherits unset fields from.
	Extends string
	pos     source.Pos
	extPos  source.Pos
	// own is the document the file holds; merged is it with inheritance applied.
	own    *node
	merged *node
	// Program renders the template when no rule changes it.
	Program *Program
}

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// ID returns the template id a file name gives, and whether the name is a valid id.
func ID(path string) (string, bool) {
	base := filepath.Base(path)
	id := strings.TrimSuffix(base, filepath.Ext(base))
	return id, idPattern.MatchString(id)
}

// Parse reads one template file, compiling its placeholders with c. Every value is checked
// against the catalogue of Anam's request; what depends on inheritance is checked by Resolve.
func Parse(path string, data []byte, c *expression.Compiler) (*Template, source.Errors) {
	id, ok := ID(path)
	if !ok {
		return nil, source.Errors{source.Errorf(source.Pos{Path: path, Line: 1, Col: 1},
			"persona file name %q does not give a valid id (expected lower-case letters, digits and dashes, starting with a letter or digit)", filepath.Base(path))}
	}
	root, errs := source.Parse(path, data)
	if errs != nil {
		return nil, errs
	}
	if root == nil {
		return nil, source.Errors{source.Errorf(source.Pos{Path: path, Line: 1, Col: 1}, "persona file is empty (expected at least name, avatarId and voiceId)")}
	}
	p := parser{path: path, c: c}
	doc := p.parse(catalogue.PersonaFile, root, "", source.At(path, root))
	if doc != nil && doc.kind != object {
		p.errs.Addf(doc.pos, "a persona file must be a mapping of persona fields, got %s", source.Describe(root))
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	t := &Template{ID: id, Path: path, pos: source.At(path, root), own: doc}
	if ext := doc.get(keyExtends); ext != nil {
		t.Extends, _ = ext.lit.(string)
		t.extPos = ext.pos
		doc.members = slices.DeleteFunc(doc.members, func(m member) bool { return m.key == keyExtends })
	}
	return t, nil
}

// Resolve applies inheritance to every template, checks the result and compiles it: parents
// exist, there is no cycle, required fields are there, values that depend on each other agree,
// and a `default` template exists. dir locates an error that belongs to no file (the missing
// default).
func Resolve(templates map[string]*Template, dir string) source.Errors {
	var errs source.Errors
	if _, ok := templates[DefaultID]; !ok {
		errs.Addf(source.Pos{Path: dir, Line: 1, Col: 1}, "no %q persona (expected %s.yaml: the persona used when no rule matches)", DefaultID, filepath.Join(dir, DefaultID))
	}
	const (
		unvisited = iota
		visiting
		done
	)
	state := make(map[string]int, len(templates))
	failed := make(map[string]bool)
	var visit func(t *Template) bool
	visit = func(t *Template) bool {
		switch state[t.ID] {
		case done:
			return !failed[t.ID]
		case visiting:
			return false
		}
		state[t.ID] = visiting
		ok := true
		var parent *node
		if t.Extends != "" {
			p, exists := templates[t.Extends]
			switch {
			case !exists:
				errs.Addf(t.extPos, "persona %q extends %q, which does not exist%s", t.ID, t.Extends, source.Suggest(t.Extends, slices.Sorted(maps.Keys(templates))))
				ok = false
			case state[p.ID] == visiting:
				// Reported once, at the template that closes the cycle; the others in it fail
				// without a message of their own.
				errs.Addf(t.extPos, "persona %q extends %q, which leads back to %q (extends cycle: %s)", t.ID, t.Extends, t.ID, cycle(templates, t))
				ok = false
			case !visit(p):
				ok = false
			default:
				parent = p.merged
			}
		}
		if ok {
			t.merged = prune(merge(parent, t.own))
			if cerrs := check(t.own, t.merged, t.pos, "persona "+quote(t.ID)); len(cerrs) > 0 {
				errs.Add(cerrs...)
				ok = false
			} else {
				t.Program = compileDoc(t.merged, Label(t.ID, ""))
			}
		}
		state[t.ID] = done
		failed[t.ID] = !ok
		return ok
	}
	for _, id := range slices.Sorted(maps.Keys(templates)) {
		visit(templates[id])
	}
	return dedupe(errs)
}

// Label is the default client label of a session: persona-router/<persona>[/<rule>], which
// Anam's sessions API can search.
func Label(persona, rule string) string {
	if rule == "" {
		return "persona-router/" + persona
	}
	return "persona-router/" + persona + "/" + rule
}

// Doc is the document of a rule's `set`: persona fields merged over its persona's.
type Doc struct {
	root *node
}

// Field returns where the document gives a top-level field, and whether it does.
func (d *Doc) Field(name string) (source.Pos, bool) {
	if m := d.root.get(name); m != nil {
		return m.keyPos, true
	}
	return source.Pos{}, false
}

// CheckOverlay checks, when the configuration loads, an overlay rule's set merged over what a
// route renders — the template with the set of the rule that chose it (nil for none) — as a
// request would see them together: a field the persona cannot take (it is stateful), a one-of
// or together group the two break, a required field the overlay removes.
func (t *Template) CheckOverlay(set, overlay *Doc, name string, pos source.Pos) source.Errors {
	base := t.merged
	if set != nil {
		base = prune(merge(base, set.root))
	}
	if stateful(base) {
		return nil // overlays leave a persona saved in Anam Lab as it is
	}
	merged := prune(merge(base, overlay.root))
	// Named by the overlay alone: the same problem over several personas is one error.
	return check(overlay.root, merged, pos, fmt.Sprintf("overlay %q", name))
}

// ParseSet reads the `set` mapping of a rule, compiling its placeholders with c.
func ParseSet(path string, n *yaml.Node, c *expression.Compiler) (*Doc, source.Errors) {
	p := parser{path: path, c: c}
	root := p.parse(catalogue.Set, n, "", source.At(path, n))
	if root != nil && root.kind != object {
		p.errs.Addf(root.pos, "set must be a mapping of persona fields, got %s", source.Describe(n))
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return &Doc{root: root}, nil
}

// Link merges a rule's set (nil when it has none) over the template, checks the result on
// behalf of who, the rule, located at pos, and compiles it with the rule's client label.
func (t *Template) Link(set *Doc, rule string, pos source.Pos) (*Program, source.Errors) {
	if set == nil {
		return compileDoc(t.merged, Label(t.ID, rule)), nil
	}
	merged := prune(merge(t.merged, set.root))
	if errs := check(set.root, merged, pos, "rule "+quote(rule)); len(errs) > 0 {
		return nil, dedupe(errs)
	}
	return compileDoc(merged, Label(t.ID, rule)), nil
}

// cycle spells out the extends chain starting at t until it comes back to t.
func cycle(templates map[string]*Template, t *Template) string {
	chain := []string{t.ID}
	for cur := templates[t.Extends]; cur != nil && len(chain) <= len(templates); cur = templates[cur.Extends] {
		chain = append(chain, cur.ID)
		if cur.ID == t.ID {
			break
		}
	}
	return strings.Join(chain, " → ")
}

func quote(s string) string { return `"` + s + `"` }
