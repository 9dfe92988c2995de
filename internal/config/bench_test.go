package config_test

import (
	"fmt"
	"testing"

	"github.com/persona-router/persona-router/internal/anam"
	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/config/configtest"
	"github.com/persona-router/persona-router/internal/expression"
)

// BenchmarkResolve measures deciding and rendering one request (two placeholders) against
// configurations of growing size, for a request matched by the first rule of its context, by
// the last, and by none. "native" is the baseline in the same run: the same decision and
// rendering written directly in Go.
func BenchmarkResolve(b *testing.B) {
	for _, lc := range []configtest.Large{
		{Rules: 10, Contexts: 4, Personas: 5},
		{Rules: 100, Contexts: 10, Personas: 10},
		{Rules: 1000, Contexts: 10, Personas: 100},
	} {
		snap, err := config.Load(lc.Write(b))
		if err != nil {
			b.Fatal(err)
		}
		hand := newNative(lc)
		perContext := lc.Rules / lc.Contexts
		for _, match := range []struct {
			name string
			tier string
		}{
			{"first", "t3"}, // the first rule of context c3
			{"last", fmt.Sprintf("t%d", 3+(perContext-1)*lc.Contexts)}, // the last rule of c3
			{"none", "none"},
		} {
			in := expression.Input{
				Context:  "c3",
				Metadata: map[string]any{"tier": match.tier, "product": "Atlas"},
				User:     map[string]any{"id": "u-1", "name": "Ann"},
			}
			name := fmt.Sprintf("rules=%d/contexts=%d/match=%s", lc.Rules, lc.Contexts, match.name)
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

func newNative(lc configtest.Large) native {
	n := native{}
	for i := range lc.Rules {
		ctx := fmt.Sprintf("c%d", i%lc.Contexts)
		n[ctx] = append(n[ctx], struct{ tier, persona string }{fmt.Sprintf("t%d", i), fmt.Sprintf("P%d", i%(lc.Personas-1))})
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
	dirs := configtest.Large{Rules: 1000, Contexts: 10, Personas: 100, Tests: 1000}.Write(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := config.Load(dirs); err != nil {
			b.Fatal(err)
		}
	}
}
