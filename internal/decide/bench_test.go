package decide_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/persona-router/persona-router/internal/budget"
	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/config/configtest"
	"github.com/persona-router/persona-router/internal/expression"
)

// BenchmarkDecide measures deciding and rendering one request (two placeholders) against
// configurations of growing size, for a request matched by the first rule of its context, by
// the last, and by none. "native" is the baseline in the same run: the same decision and
// rendering written directly in Go, encoded with encoding/json.
func BenchmarkDecide(b *testing.B) {
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
					res := snap.Decide(in, false)
					if res.Err != nil {
						b.Fatal(res.Err)
					}
					res.Release()
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

var sink []byte

// nativeConfig is the hand-written persona config, encoded like the rendered request.
type nativeConfig struct {
	Name         string `json:"name"`
	AvatarID     string `json:"avatarId"`
	VoiceID      string `json:"voiceId"`
	LLMID        string `json:"llmId"`
	LanguageCode string `json:"languageCode"`
	SystemPrompt string `json:"systemPrompt"`
}

type nativeRequest struct {
	PersonaConfig nativeConfig `json:"personaConfig"`
	ClientLabel   string       `json:"clientLabel"`
}

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
	sink, _ = json.Marshal(nativeRequest{PersonaConfig: nativeConfig{
		Name: name, AvatarID: "30fa96d0-26c4-4e55-94a0-517025942e18", VoiceID: "6bfbe25a-979d-40f3-a92b-5394170af54b",
		LLMID: "0934d97d-0c3a-4f33-91b0-5e136a0ef466", LanguageCode: "en",
		SystemPrompt: "You are " + name + ", helping " + user + " with " + product + ". Be brief.",
	}, ClientLabel: "persona-router/" + name})
}

// richPersona is a persona using the new fields: three tools, voice options and four
// placeholders; literalTools more tools and extra literal fields make it larger without
// adding placeholders.
func richPersona(literalTools, extraFields int) string {
	var b strings.Builder
	b.WriteString(`name: "Cara for {{ user.name ?? 'you' }}"
avatarId: 30fa96d0-26c4-4e55-94a0-517025942e18
voiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b
llmId: 0934d97d-0c3a-4f33-91b0-5e136a0ef466
languageCode: en
maxSessionLengthSeconds: "{{ metadata.tier == 'pro' ? 1800 : 600 }}"
zeroDataRetention: "{{ metadata.region == 'EU' }}"
systemPrompt: You are Cara, a support specialist. Be brief and kind.
voiceDetectionOptions: {endOfSpeechSensitivity: 0.6, silenceBeforeSkipTurnSeconds: 30, speechEnhancementLevel: 0.5}
voiceGenerationOptions: {speed: 1.05, stability: 0.6}
tools:
  - type: client
    name: open_page
    description: Opens a page of the product.
    parameters: {type: object, properties: {page: {type: string}}, required: [page]}
  - type: server
    subtype: webhook
    name: lookup_order
    description: Looks up an order by its number.
    url: "https://api.example.com/orders?shop={{ metadata.product }}"
    method: GET
    parameters: {type: object, properties: {order: {type: string}}, required: [order]}
  - type: server
    subtype: knowledge
    name: manuals
    description: Searches the product manuals.
    documentFolderIds: [7b1c6a2e-3f4d-4e5a-8b9c-0d1e2f3a4b5c]
`)
	for i := range literalTools {
		fmt.Fprintf(&b, "  - {type: client, name: tool_%d, description: A literal tool number %d.}\n", i, i)
	}
	if extraFields > 0 {
		b.WriteString("extra:\n")
		for i := range extraFields {
			fmt.Fprintf(&b, "  future%d: literal value %d\n", i, i)
		}
	}
	return b.String()
}

// flatPersona is a persona of today's ten flat fields with two placeholders, like the shipped
// ones.
const flatPersona = `name: Cara
avatarId: 30fa96d0-26c4-4e55-94a0-517025942e18
voiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b
llmId: 0934d97d-0c3a-4f33-91b0-5e136a0ef466
languageCode: en
maxSessionLengthSeconds: 900
systemPrompt: You are Cara, helping {{ user.name ?? "a customer" }} with {{ metadata.product ?? "our products" }}. Be brief and kind.
`

// documentConfig writes a configuration whose rules route context "flat", "rich" and "large"
// to the three personas.
func documentConfig(tb testing.TB) config.Dirs {
	return configtest.Files(tb, map[string]string{
		"personas/default.yaml": flatPersona,
		"personas/flat.yaml":    flatPersona,
		"personas/rich.yaml":    richPersona(0, 0),
		"personas/large.yaml":   richPersona(20, 40),
		"rules/r.yaml": `rules:
  - {name: flat, when: context == "flat", persona: flat}
  - {name: rich, when: context == "rich", persona: rich}
  - {name: large, when: context == "large", persona: large}
`,
	})
}

func documentInput(ctx string) expression.Input {
	return expression.Input{
		Context:  ctx,
		Metadata: map[string]any{"tier": "pro", "region": "EU", "product": "Atlas"},
		User:     map[string]any{"id": "u-1", "name": "Ann"},
	}
}

// BenchmarkPersonaDocument measures deciding, rendering and encoding the request body for a
// flat persona (today's ten fields, two placeholders), a rich one (three tools, voice options,
// four placeholders) and a large one (the rich one with 20 more tools and 40 extra literal
// fields), side by side in one run.
func BenchmarkPersonaDocument(b *testing.B) {
	snap, err := config.Load(documentConfig(b))
	if err != nil {
		b.Fatal(err)
	}
	for _, ctx := range []string{"flat", "rich", "large"} {
		in := documentInput(ctx)
		b.Run(ctx, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res := snap.Decide(in, false)
				if res.Err != nil {
					b.Fatal(res.Err)
				}
				sink = res.Request()
				res.Release()
			}
		})
	}
}

// BenchmarkBudgets measures what two budgets add to a token request with the in-memory store:
// working out the claims (their when and key) and reserving them in one step, for a new user
// each time (as many keys as requests, the store's worst case) and for one user. Each
// reservation is given back at once, as if every session ended: otherwise the account's open
// sessions would pile up past any real concurrency cap.
func BenchmarkBudgets(b *testing.B) {
	snap := configtest.Load(b, map[string]string{
		"personas/default.yaml": flatPersona,
		"rules/budgets.yaml": `budgets:
  - {name: free-daily, when: 'user.plan == "free"', window: day, sessions: 1000000000, minutes: 1000000000}
  - {name: account, key: '"global"', concurrent: 1000000000}
`,
	})
	for _, users := range []string{"one user", "a new user each time"} {
		b.Run(users, func(b *testing.B) {
			store := budget.NewMemory()
			in := expression.Input{User: map[string]any{"id": "u-1", "plan": "free"}}
			res := snap.Decide(in, false)
			defer res.Release()
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if users != "one user" {
					i++
					in.User = map[string]any{"id": "u-" + strconv.Itoa(i), "plan": "free"}
				}
				now := time.Now()
				claims, _ := snap.Claims(in, &res, "ip:127.0.0.1", now)
				r, err := store.Reserve(ctx, now, claims, 600)
				if err != nil {
					b.Fatal(err)
				}
				_ = store.Release(ctx, r)
			}
		})
	}
}
