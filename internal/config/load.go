// Package config loads the persona and rule directories into an immutable Snapshot: every
// file parsed, every expression compiled, every reference checked and every rule test passed,
// or else every error found. The CLI, the server and the reloader all load through Load.
package config

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/persona-router/persona-router/internal/budget"
	"github.com/persona-router/persona-router/internal/decide"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/persona"
	"github.com/persona-router/persona-router/internal/rules"
	"github.com/persona-router/persona-router/internal/schema"
	"github.com/persona-router/persona-router/internal/source"
)

// Dirs names the two configuration directories, and the secret their placeholders sign with.
type Dirs struct {
	Rules    string
	Personas string
	// SigningSecret is the key of sign() (TOOL_SIGNING_SECRET). Without one, a configuration
	// that calls sign() does not load. It is not part of the configuration's version.
	SigningSecret []byte
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
	return files.Build(context.Background())
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

// Read reads the configuration files of both directories, holding them to the limits on
// files and bytes before reading them.
func Read(dirs Dirs) (*Files, error) {
	var r reader
	personas := r.readDir(dirs.Personas, "personas", source.MaxPersonas)
	rules := r.readDir(dirs.Rules, "rules", source.MaxRuleFiles)
	if len(r.errs) > 0 {
		r.errs.Sort()
		return nil, source.Coded(source.CodeFile, r.errs.Cap())
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

// reader reads the files of a configuration, keeping count of their bytes across both
// directories and collecting every problem.
type reader struct {
	bytes int64
	// full is set once the configuration is over MaxConfigBytes; nothing more is read then.
	full bool
	errs source.Errors
}

// readDir reads the configuration files of dir in name order, at most limit of them. Symbolic
// links are followed, as a Kubernetes ConfigMap volume is made of them; subdirectories are not
// read.
func (r *reader) readDir(dir, what string, limit int) []file {
	dirPos := source.Pos{Path: dir, Line: 1, Col: 1}
	entries, err := os.ReadDir(dir)
	if err != nil {
		r.errs.Addf(dirPos, "%s directory %s", what, problem(dir, err, "does not exist"))
		return nil
	}
	var names []string
	for _, e := range entries {
		if IsConfigFile(e.Name()) {
			names = append(names, e.Name())
		}
	}
	if len(names) > limit {
		r.errs.Addf(dirPos, "too many files: the %s directory holds %d YAML files (limit %d)", what, len(names), limit)
		return nil
	}
	var files []file
	for _, name := range names {
		if r.full {
			break
		}
		path := filepath.Join(dir, name)
		pos := source.Pos{Path: path, Line: 1, Col: 1}
		info, err := os.Stat(path)
		if err != nil {
			r.errs.Addf(pos, "%s", problem(path, err, "was removed while it was being read"))
			continue
		}
		if !info.Mode().IsRegular() {
			continue
		}
		if info.Size() > source.MaxFileBytes {
			r.errs.Addf(pos, "file is too large (%d bytes, limit %d bytes = 1 MiB)", info.Size(), source.MaxFileBytes)
			continue
		}
		if r.over(dirPos, name, info.Size()) {
			break
		}
		data, err := readFile(path)
		if err != nil {
			r.errs.Addf(pos, "%s", problem(path, err, "was removed while it was being read"))
			continue
		}
		if len(data) > source.MaxFileBytes {
			r.errs.Addf(pos, "file is too large (more than the limit of %d bytes = 1 MiB)", source.MaxFileBytes)
			continue
		}
		r.bytes += int64(len(data))
		if r.over(dirPos, name, 0) {
			break
		}
		files = append(files, file{path: path, data: data})
	}
	return files
}

// over reports, at pos, a configuration that the file name, of size more bytes, would take
// over MaxConfigBytes, and stops the reading.
func (r *reader) over(pos source.Pos, name string, more int64) bool {
	if total := r.bytes + more; total > source.MaxConfigBytes {
		r.errs.Addf(pos, "configuration is too large: with %s its files come to %d bytes (limit %d bytes = 32 MiB for both directories)", name, total, source.MaxConfigBytes)
		r.full = true
	}
	return r.full
}

// readFile reads at most one byte more than MaxFileBytes of the file at path: a file that has
// grown since its size was checked is cut short there, and refused.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, source.MaxFileBytes+1))
}

// problem says why path could not be read, for an error positioned at path: gone (absent,
// with the caller's words), a symbolic link to nothing, a symbolic link loop, or what the
// system said.
func problem(path string, err error, absent string) string {
	switch {
	case errors.Is(err, syscall.ELOOP):
		target, _ := os.Readlink(path)
		return fmt.Sprintf("is a symbolic link to %s, which leads into a symbolic link loop", target)
	case errors.Is(err, fs.ErrNotExist):
		if target, lerr := os.Readlink(path); lerr == nil {
			return fmt.Sprintf("is a symbolic link to %s, which does not exist", target)
		}
		return absent
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return "cannot be read: " + err.Error()
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

// Build parses, compiles, links and tests the files into a snapshot, or returns every error
// (up to source.MaxErrors). When ctx ends it stops between two files or two rule tests and
// returns ctx's error.
func (files *Files) Build(ctx context.Context) (*Snapshot, error) {
	s, failed, err := files.build(ctx)
	if err != nil {
		return nil, err
	}
	if failed != nil {
		return nil, failed.Cap()
	}
	return s, nil
}

// LoadForExplain loads like Load, but keeps a configuration whose only problems are failing
// rule tests: it returns the snapshot and the failures, so that explain can say why a request
// gets its persona exactly when an author needs it. A configuration that does not load is an
// error as with Load.
func LoadForExplain(dirs Dirs) (*Snapshot, source.Errors, error) {
	files, err := Read(dirs)
	if err != nil {
		return nil, nil, err
	}
	return files.build(context.Background())
}

// build is Build, returning failing rule tests apart from the snapshot they were run on.
func (files *Files) build(ctx context.Context) (*Snapshot, source.Errors, error) {
	dirs, personaFiles, ruleFiles := files.Dirs, files.personas, files.rules
	var errs source.Errors
	// Rules files are parsed first: their metadata sections declare what expressions in
	// personas and rules are type-checked against.
	type parsedFile struct {
		path string
		root *yaml.Node
	}
	var roots []parsedFile
	var declared []*schema.Field
	var ruleCount, testCount int
	var expanded source.Size
	for _, f := range ruleFiles {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if len(errs) > source.MaxErrors {
			break
		}
		root, size, perrs := source.ParseSize(f.path, f.data)
		if perrs != nil {
			errs.Add(perrs...)
			continue
		}
		// The configuration's size, rules and tests are counted before a file is read further;
		// past a limit, nothing more is.
		over := expand(f.path, size, &expanded)
		ruleNodes, testNodes := rules.Entries(root)
		over.Add(count(f.path, ruleNodes, &ruleCount, source.MaxRules, "rule")...)
		over.Add(count(f.path, testNodes, &testCount, source.MaxTests, "rule test")...)
		if over != nil {
			errs.Add(source.Coded(source.CodeLimit, over)...)
			break
		}
		fields, merrs := rules.Metadata(f.path, root)
		errs.Add(source.Coded(source.CodeMetadataSchema, merrs)...)
		declared = append(declared, fields...)
		roots = append(roots, parsedFile{f.path, root})
	}
	metadata, merrs := schema.New(declared)
	errs.Add(source.Coded(source.CodeMetadataSchema, merrs)...)

	var opts []expression.Option
	if len(dirs.SigningSecret) > 0 {
		opts = append(opts, expression.WithSigningSecret(dirs.SigningSecret))
	}
	if len(errs) == 0 {
		opts = append(opts, expression.WithMetadata(metadataKeys(metadata)))
	}
	compiler := expression.NewCompiler(opts...)
	templates := make(map[string]*persona.Template, len(personaFiles))
	for _, f := range personaFiles {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if len(errs) > source.MaxErrors {
			break
		}
		t, terrs := persona.Parse(f.path, f.data, compiler)
		errs.Add(source.Coded(source.CodePersona, terrs)...)
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
		errs.Add(source.Coded(source.CodePersona, persona.Resolve(templates, dirs.Personas))...)
	}
	personasOK := len(errs) == 0

	var parsed []*rules.File
	for _, f := range roots {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if len(errs) > source.MaxErrors {
			break
		}
		rf, rerrs := rules.ParseTree(f.path, f.root, compiler)
		errs.Add(source.Coded(source.CodeRule, rerrs)...)
		if rf != nil {
			parsed = append(parsed, rf)
		}
	}
	set, serrs := rules.NewSet(parsed)
	errs.Add(source.Coded(source.CodeRule, serrs)...)
	var budgets []*budget.Budget
	for _, f := range parsed {
		budgets = append(budgets, f.Budgets...)
	}
	errs.Add(source.Coded(source.CodeRule, budget.Check(budgets))...)

	parts := decide.Parts{
		Version:  files.Version,
		Layout:   compiler.Layout(),
		Personas: slices.Collect(maps.Keys(templates)),
		Rules:    set,
		Metadata: metadata,
		Budgets:  budgets,
	}
	if personasOK {
		def := templates[persona.DefaultID]
		parts.Fallback = decide.Route{Persona: def.ID, Program: def.Program}
		var lerrs source.Errors
		parts.Routes, lerrs = linkRules(set, templates)
		errs.Add(source.Coded(source.CodeRule, lerrs)...)
	}
	if len(errs) > 0 {
		errs.Sort()
		return nil, nil, errs.Cap()
	}
	s := &Snapshot{Version: files.Version, LoadedAt: time.Now(), Decider: decide.New(parts), ruleFiles: parsed}
	cov, err := s.RunTests(ctx, parsed)
	s.coverage = cov
	if err != nil {
		var list source.Errors
		if errors.As(err, &list) {
			return s, list, nil
		}
		return nil, nil, err
	}
	return s, nil, nil
}

// metadataKeys is the metadata schema as the expression compiler type-checks against it.
func metadataKeys(s *schema.Schema) map[string]expression.MetadataKey {
	keys := make(map[string]expression.MetadataKey)
	for _, f := range s.Fields() {
		k := expression.MetadataKey{Type: f.Type}
		if f.Type == "string" && f.Enum != nil {
			for _, v := range f.Enum {
				if s, ok := v.(string); ok {
					k.Enum = append(k.Enum, s)
				}
			}
		}
		keys[f.Name] = k
	}
	return keys
}

// expand adds the size of the rules file at path to *total, or reports a configuration that
// it takes over MaxConfigNodes or MaxConfigExpandedBytes.
func expand(path string, size source.Size, total *source.Size) source.Errors {
	total.Nodes += size.Nodes
	total.Bytes += size.Bytes
	pos := source.Pos{Path: path, Line: 1, Col: 1}
	switch {
	case total.Nodes > source.MaxConfigNodes:
		return source.Errors{source.Errorf(pos, "configuration is too large after expanding aliases: with this file its rules files come to %d nodes (limit %d)", total.Nodes, source.MaxConfigNodes)}
	case total.Bytes > source.MaxConfigExpandedBytes:
		return source.Errors{source.Errorf(pos, "configuration is too large after expanding aliases: with this file its rules files come to %d bytes of text (limit %d)", total.Bytes, source.MaxConfigExpandedBytes)}
	}
	return nil
}

// count adds the entries of a file to *total, or reports the first entry over limit.
func count(path string, entries []*yaml.Node, total *int, limit int, what string) source.Errors {
	if *total+len(entries) <= limit {
		*total += len(entries)
		return nil
	}
	return source.Errors{source.Errorf(source.At(path, entries[limit-*total]), "too many %ss: this is %s %d of the configuration (limit %d)", what, what, limit+1, limit)}
}

// linkRules points every rule at the program it renders, by rule order: its persona's, with
// the rule's `set` merged over it and its own client label.
func linkRules(set *rules.Set, templates map[string]*persona.Template) ([]decide.Route, source.Errors) {
	var errs source.Errors
	routes := make([]decide.Route, len(set.Rules()))
	ids := slices.Sorted(maps.Keys(templates))
	for _, r := range set.Rules() {
		if r.Overlay {
			routes[r.Order] = decide.Route{Program: persona.CompilePatch(r.Set)}
			continue
		}
		t, ok := templates[r.Persona]
		if !ok {
			errs.Addf(r.PersonaPos, "rule %q names persona %q, which does not exist%s (personas: %s)", r.Name, r.Persona, source.Suggest(r.Persona, ids), strings.Join(ids, ", "))
			continue
		}
		prog, lerrs := t.Link(r.Set, r.Name, r.Pos)
		errs.Add(lerrs...)
		routes[r.Order] = decide.Route{Persona: t.ID, Program: prog}
	}
	errs.Add(checkOverlays(set, templates)...)
	return routes, errs
}

// checkOverlays checks every overlay merged over every route it could apply to (each rule
// that picks a persona, and the default), so that an overlay that cannot fit one of them
// fails the load rather than the requests it would change.
func checkOverlays(set *rules.Set, templates map[string]*persona.Template) source.Errors {
	var errs source.Errors
	for _, o := range set.Rules() {
		if !o.Overlay {
			continue
		}
		if at, ok := o.Set.Field("personaId"); ok {
			errs.Addf(at, "overlay %q sets personaId: an overlay changes the persona another rule chose, it cannot swap it for a saved one", o.Name)
			continue
		}
		errs.Add(templates[persona.DefaultID].CheckOverlay(nil, o.Set, o.Name, o.Pos)...)
		for _, r := range set.Rules() {
			if t, ok := templates[r.Persona]; ok && !r.Overlay {
				errs.Add(t.CheckOverlay(r.Set, o.Set, o.Name, o.Pos)...)
			}
		}
	}
	return dedupe(errs)
}

// dedupe drops repeated errors: an overlay's problem is found again over each route.
func dedupe(errs source.Errors) source.Errors {
	seen := make(map[string]bool, len(errs))
	out := errs[:0]
	for _, e := range errs {
		if key := e.Error(); !seen[key] {
			seen[key] = true
			out = append(out, e)
		}
	}
	return out
}
