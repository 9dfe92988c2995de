package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/persona-router/persona-router/internal/anam"
	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/expression"
)

// largeConfig describes a generated configuration: rules spread round-robin over contexts
// c0…c(contexts-1), rule i matching metadata.tier == "t<i>", and personas p0…p(personas-1)
// whose system prompts have two placeholders.
type largeConfig struct {
	rules, contexts, personas, tests int
}

func (lc largeConfig) write(tb testing.TB) config.Dirs {
	tb.Helper()
	root := tb.TempDir()
	dirs := dirsIn(root)
	for _, d := range []string{dirs.Rules, dirs.Personas} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	persona := func(name string) string {
		return fmt.Sprintf(`name: %s
avatarId: 30fa96d0-26c4-4e55-94a0-517025942e18
voiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b
llmId: 0934d97d-0c3a-4f33-91b0-5e136a0ef466
languageCode: en
systemPrompt: "You are %s, helping {{ user.name ?? 'a customer' }} with {{ metadata.product }}. Be brief."
`, name, name)
	}
	write := func(path, text string) {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	write(filepath.Join(dirs.Personas, "default.yaml"), persona("Default"))
	for p := range lc.personas - 1 {
		write(filepath.Join(dirs.Personas, fmt.Sprintf("p%d.yaml", p)), persona(fmt.Sprintf("P%d", p)))
	}
	// Ten rules files, as a team of product owners would keep them.
	const files = 10
	var b [files]strings.Builder
	for f := range files {
		b[f].WriteString("rules:\n")
	}
	for i := range lc.rules {
		fmt.Fprintf(&b[i%files], "  - name: r%d\n    when: context == \"c%d\" && metadata.tier == \"t%d\"\n    persona: p%d\n",
			i, i%lc.contexts, i, i%(lc.personas-1))
	}
	if lc.tests > 0 {
		for f := range files {
			b[f].WriteString("tests:\n")
		}
		for i := range lc.tests {
			r := i % lc.rules
			fmt.Fprintf(&b[i%files], "  - name: t%d\n    request: {context: c%d, metadata: {tier: t%d, product: Atlas}, user: {name: Ann}}\n    expect: {rule: r%d, persona: p%d}\n",
				i, r%lc.contexts, r, r, r%(lc.personas-1))
		}
	}
	for f := range files {
		write(filepath.Join(dirs.Rules, fmt.Sprintf("rules-%02d.yaml", f)), b[f].String())
	}
	return dirs
}

// BenchmarkResolve measures deciding and rendering one request (two placeholders) against
// configurations of growing size, for a request matched by the first rule of its context, by
// the last, and by none. "native" is the baseline in the same run: the same decision and
// rendering written directly in Go.
func BenchmarkResolve(b *testing.B) {
	for _, lc := range []largeConfig{
		{rules: 10, contexts: 4, personas: 5},
		{rules: 100, contexts: 10, personas: 10},
		{rules: 1000, contexts: 10, personas: 100},
	} {
		snap, err := config.Load(lc.write(b))
		if err != nil {
			b.Fatal(err)
		}
		hand := newNative(lc)
		perContext := lc.rules / lc.contexts
		for _, match := range []struct {
			name string
			tier string
		}{
			{"first", "t3"}, // the first rule of context c3
			{"last", fmt.Sprintf("t%d", 3+(perContext-1)*lc.contexts)}, // the last rule of c3
			{"none", "none"},
		} {
			in := expression.Input{
				Context:  "c3",
				Metadata: map[string]any{"tier": match.tier, "product": "Atlas"},
				User:     map[string]any{"id": "u-1", "name": "Ann"},
			}
			name := fmt.Sprintf("rules=%d/contexts=%d/match=%s", lc.rules, lc.contexts, match.name)
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					res := snap.Resolve(in, false)
					if res.Err != nil {
						b.Fatal(res.Err)
					}
				}
			})
			b.Run(name+"/native", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					hand.resolve(in)
				}
			})
		}
	}
}

var sink anam.PersonaConfig

// native is the configuration hand-written in Go: the rules of each context in a slice, and
// the persona rendered by string concatenation.
type native map[string][]struct{ tier, persona string }

func newNative(lc largeConfig) native {
	n := native{}
	for i := range lc.rules {
		ctx := fmt.Sprintf("c%d", i%lc.contexts)
		n[ctx] = append(n[ctx], struct{ tier, persona string }{fmt.Sprintf("t%d", i), fmt.Sprintf("P%d", i%(lc.personas-1))})
	}
	return n
}

func (n native) resolve(in expression.Input) {
	name := "Default"
	tier, _ := in.Metadata["tier"].(string)
	for _, r := range n[in.Context] {
		if r.tier == tier {
			name = r.persona
			break
		}
	}
	user, _ := in.User["name"].(string)
	if user == "" {
		user = "a customer"
	}
	product, _ := in.Metadata["product"].(string)
	sink = anam.PersonaConfig{
		Name: name, AvatarID: "30fa96d0-26c4-4e55-94a0-517025942e18", VoiceID: "6bfbe25a-979d-40f3-a92b-5394170af54b",
		LLMID: "0934d97d-0c3a-4f33-91b0-5e136a0ef466", LanguageCode: "en",
		SystemPrompt: "You are " + name + ", helping " + user + " with " + product + ". Be brief.",
	}
}

// BenchmarkLoad measures loading 1,000 rules, 100 personas and 1,000 rule tests.
func BenchmarkLoad(b *testing.B) {
	dirs := largeConfig{rules: 1000, contexts: 10, personas: 100, tests: 1000}.write(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := config.Load(dirs); err != nil {
			b.Fatal(err)
		}
	}
}
