// Package persona reads persona templates — what Anam is asked to show and say — and renders
// them for one request.
package persona

import (
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

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
	own     Fields
	// Fields are the template's fields after inheritance: what it renders.
	Fields Fields
}

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// ID returns the template id a file name gives, and whether the name is a valid id.
func ID(path string) (string, bool) {
	base := filepath.Base(path)
	id := strings.TrimSuffix(base, filepath.Ext(base))
	return id, idPattern.MatchString(id)
}

// Parse reads one template file, compiling its placeholders with c.
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
	known := append([]string{"extends"}, FieldNames...)
	pairs, errs := source.Mapping(path, root, "persona", known)
	t := &Template{ID: id, Path: path, pos: source.At(path, root)}
	fieldPairs := pairs[:0:0]
	for _, p := range pairs {
		if p.Key != "extends" {
			fieldPairs = append(fieldPairs, p)
			continue
		}
		v, err := source.String(path, p.Value, "extends")
		if err != nil {
			errs.Add(err)
			continue
		}
		t.Extends, t.extPos = v, source.At(path, p.Value)
	}
	own, ferrs := ParseFields(path, fieldPairs, c)
	errs.Add(ferrs...)
	if len(errs) > 0 {
		return nil, errs
	}
	t.own = own
	return t, nil
}

// Resolve applies inheritance to every template and checks the result: parents exist, there
// is no cycle, required fields are there, and a `default` template exists. pos locates an error
// that belongs to no file (the missing default).
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
		t.Fields = t.own
		if t.Extends != "" {
			parent, exists := templates[t.Extends]
			switch {
			case !exists:
				errs.Addf(t.extPos, "persona %q extends %q, which does not exist", t.ID, t.Extends)
				ok = false
			case state[parent.ID] == visiting:
				errs.Addf(t.extPos, "persona %q extends %q, which leads back to %q (extends cycle: %s)", t.ID, t.Extends, t.ID, cycle(templates, t))
				ok = false
			case !visit(parent):
				ok = false
			default:
				t.Fields = Merge(parent.Fields, t.own)
			}
		}
		if ok {
			if cerrs := Check(t.own, t.Fields, t.pos, "persona "+quote(t.ID)); len(cerrs) > 0 {
				errs.Add(cerrs...)
				ok = false
			}
		}
		state[t.ID] = done
		failed[t.ID] = !ok
		return ok
	}
	for _, id := range slices.Sorted(maps.Keys(templates)) {
		visit(templates[id])
	}
	return errs
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
