// Package config loads the persona and rule directories into an immutable Snapshot: every
// file parsed, every expression compiled, every reference checked and every rule test passed,
// or else every error found. The CLI, the server and the reloader all load through Load.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/persona"
	"github.com/persona-router/persona-router/internal/rules"
	"github.com/persona-router/persona-router/internal/schema"
	"github.com/persona-router/persona-router/internal/source"
)

// Dirs names the two configuration directories.
type Dirs struct {
	Rules    string
	Personas string
}

// file is one configuration file read from disk.
type file struct {
	path string
	data []byte
}

// Load reads both directories and returns a complete snapshot, or a source.Errors listing
// every problem found. It never returns a partial snapshot.
func Load(dirs Dirs) (*Snapshot, error) {
	files, err := Read(dirs)
	if err != nil {
		return nil, err
	}
	return files.Build()
}

// Files is a configuration as read from disk, before it is parsed.
type Files struct {
	Dirs Dirs
	// Version identifies the content: a hash of every file's name and bytes. Equal contents
	// have equal versions, so a reloader can tell a real change from a touched file.
	Version  string
	personas []file
	rules    []file
}

// Read reads the configuration files of both directories.
func Read(dirs Dirs) (*Files, error) {
	personas, perr := readDir(dirs.Personas, "personas")
	rules, rerr := readDir(dirs.Rules, "rules")
	var errs source.Errors
	for _, err := range []error{perr, rerr} {
		var list source.Errors
		switch {
		case err == nil:
		case errors.As(err, &list):
			errs.Add(list...)
		default:
			return nil, err
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return &Files{Dirs: dirs, Version: version(personas, rules), personas: personas, rules: rules}, nil
}

// IsConfigFile tells whether a directory entry name is loaded: a visible .yaml or .yml file.
// Hidden names (.swp files, Kubernetes' ..data) and editor backups (x.yaml~) are not.
func IsConfigFile(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	ext := filepath.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

// readDir reads the configuration files of dir in name order. Symbolic links are followed, as
// a Kubernetes ConfigMap volume is made of them; subdirectories are not read.
func readDir(dir, what string) ([]file, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, source.Errors{source.Errorf(source.Pos{Path: dir, Line: 1, Col: 1}, "%s directory does not exist", what)}
		}
		return nil, fmt.Errorf("reading %s directory %s: %w", what, dir, err)
	}
	var files []file
	for _, e := range entries {
		if !IsConfigFile(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		info, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		if !info.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		files = append(files, file{path: path, data: data})
	}
	return files, nil
}

// version hashes the names and contents of every file, so that equal configurations have equal
// versions wherever they are loaded.
func version(groups ...[]file) string {
	h := sha256.New()
	for i, files := range groups {
		for _, f := range files {
			fmt.Fprintf(h, "%d\x00%s\x00%d\x00", i, filepath.Base(f.path), len(f.data))
			h.Write(f.data)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Build parses, compiles, links and tests the files into a snapshot, or returns every error.
func (files *Files) Build() (*Snapshot, error) {
	dirs, personaFiles, ruleFiles := files.Dirs, files.personas, files.rules
	var errs source.Errors
	compiler := expression.NewCompiler()
	templates := make(map[string]*persona.Template, len(personaFiles))
	for _, f := range personaFiles {
		t, terrs := persona.Parse(f.path, f.data, compiler)
		errs.Add(terrs...)
		if t == nil {
			continue
		}
		if prev, dup := templates[t.ID]; dup {
			errs.Addf(source.Pos{Path: f.path, Line: 1, Col: 1}, "persona %q is defined twice (also by %s); keep one file per id", t.ID, prev.Path)
			continue
		}
		templates[t.ID] = t
	}
	// Inheritance is resolved only over a complete set of templates, or a parent that failed
	// to parse would be reported again as missing.
	if len(errs) == 0 {
		errs.Add(persona.Resolve(templates, dirs.Personas)...)
	}
	personasOK := len(errs) == 0

	var parsed []*rules.File
	for _, f := range ruleFiles {
		rf, rerrs := rules.Parse(f.path, f.data, compiler)
		errs.Add(rerrs...)
		if rf != nil {
			parsed = append(parsed, rf)
		}
	}
	set, serrs := rules.NewSet(parsed)
	errs.Add(serrs...)
	var declared []*schema.Field
	for _, f := range parsed {
		declared = append(declared, f.Metadata...)
	}
	metadata, merrs := schema.New(declared)
	errs.Add(merrs...)

	s := &Snapshot{
		Version:   files.Version,
		LoadedAt:  time.Now(),
		personas:  templates,
		rules:     set,
		routes:    make([]route, len(set.Rules())),
		ruleFiles: parsed,
		metadata:  metadata,
		layout:    compiler.Layout(),
	}
	if personasOK {
		def := templates[persona.DefaultID]
		s.fallback = route{persona: def.ID, fields: &def.Fields}
		errs.Add(s.linkRules()...)
	}
	if len(errs) > 0 {
		errs.Sort()
		return nil, errs
	}
	if err := s.runTests(); err != nil {
		return nil, err
	}
	return s, nil
}

// linkRules points every rule at the persona fields it renders: its persona's, with the
// rule's `set` merged over them.
func (s *Snapshot) linkRules() source.Errors {
	var errs source.Errors
	for _, r := range s.rules.Rules() {
		t, ok := s.personas[r.Persona]
		if !ok {
			errs.Addf(r.PersonaPos, "rule %q names persona %q, which does not exist (personas: %s)", r.Name, r.Persona, strings.Join(s.PersonaIDs(), ", "))
			continue
		}
		fields := &t.Fields
		if r.HasSet {
			merged := persona.Merge(t.Fields, r.Set)
			errs.Add(persona.Check(r.Set, merged, r.Pos, fmt.Sprintf("rule %q", r.Name))...)
			fields = &merged
		}
		s.routes[r.Order] = route{persona: t.ID, fields: fields}
	}
	return errs
}
