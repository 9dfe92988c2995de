// Package configtest writes generated configurations for benchmarks and tests.
package configtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/persona-router/persona-router/internal/config"
)

// Large describes a generated configuration: rules spread round-robin over contexts
// c0…c(Contexts-1), rule i matching metadata.tier == "t<i>" and routing to persona
// p(i mod (Personas-1)); personas whose system prompts have two placeholders; and Tests rule
// tests, test i expecting rule i mod Rules.
type Large struct {
	Rules, Contexts, Personas, Tests int
	// Schema declares the metadata the rules and personas read (tier and product), so that
	// every expression is type-checked against it.
	Schema bool
}

// Write writes the configuration into a new temporary directory, in ten rules files as a team
// would keep them, and returns its directories.
func (lc Large) Write(tb testing.TB) config.Dirs {
	tb.Helper()
	root := tb.TempDir()
	dirs := config.Dirs{Rules: filepath.Join(root, "rules"), Personas: filepath.Join(root, "personas")}
	for _, d := range []string{dirs.Rules, dirs.Personas} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	write := func(path, text string) {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	write(filepath.Join(dirs.Personas, "default.yaml"), Persona("Default"))
	for p := range lc.Personas - 1 {
		write(filepath.Join(dirs.Personas, fmt.Sprintf("p%d.yaml", p)), Persona(fmt.Sprintf("P%d", p)))
	}
	const files = 10
	var b [files]strings.Builder
	for f := range files {
		b[f].WriteString("rules:\n")
	}
	for i := range lc.Rules {
		fmt.Fprintf(&b[i%files], "  - name: r%d\n    when: context == \"c%d\" && metadata.tier == \"t%d\"\n    persona: p%d\n",
			i, i%lc.Contexts, i, i%(lc.Personas-1))
	}
	if lc.Tests > 0 {
		for f := range files {
			b[f].WriteString("tests:\n")
		}
		for i := range lc.Tests {
			r := i % lc.Rules
			fmt.Fprintf(&b[i%files], "  - name: t%d\n    request: {context: c%d, metadata: {tier: t%d, product: Atlas}, user: {name: Ann}}\n    expect: {rule: r%d, persona: p%d}\n",
				i, r%lc.Contexts, r, r, r%(lc.Personas-1))
		}
	}
	for f := range files {
		write(filepath.Join(dirs.Rules, fmt.Sprintf("rules-%02d.yaml", f)), b[f].String())
	}
	if lc.Schema {
		write(filepath.Join(dirs.Rules, "metadata.yaml"), "metadata:\n  tier: {type: string, maxLength: 16}\n  product: {type: string}\n")
	}
	return dirs
}

// Persona is a valid persona template named name, with two placeholders in its prompt.
func Persona(name string) string {
	return fmt.Sprintf(`name: %s
avatarId: 30fa96d0-26c4-4e55-94a0-517025942e18
voiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b
llmId: 0934d97d-0c3a-4f33-91b0-5e136a0ef466
languageCode: en
systemPrompt: "You are %s, helping {{ user.name ?? 'a customer' }} with {{ metadata.product }}. Be brief."
`, name, name)
}

// AddSeeds adds every YAML file of dirs to a fuzz test's seed corpus.
func AddSeeds(f *testing.F, dirs ...string) {
	f.Helper()
	for _, dir := range dirs {
		paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
}

// Files writes files, named by their path under the configuration's root (personas/x.yaml,
// rules/y.yaml), into a new temporary directory and returns its directories, both of which
// exist even when no file is written in one.
func Files(tb testing.TB, files map[string]string) config.Dirs {
	tb.Helper()
	root := tb.TempDir()
	dirs := config.Dirs{Rules: filepath.Join(root, "rules"), Personas: filepath.Join(root, "personas")}
	for _, dir := range []string{dirs.Rules, dirs.Personas} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	for name, text := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dirs
}

// Load writes files as Files does and loads them; a configuration that does not load fails tb.
func Load(tb testing.TB, files map[string]string) *config.Snapshot {
	tb.Helper()
	snap, err := config.Load(Files(tb, files))
	if err != nil {
		tb.Fatal(err)
	}
	return snap
}
