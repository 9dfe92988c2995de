package config_test

import (
	"fmt"
	"testing"

	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/config/configtest"
)

// BenchmarkLoad measures loading 1,000 rules, 100 personas and 1,000 rule tests, without and
// with a metadata schema that every expression is type-checked against.
func BenchmarkLoad(b *testing.B) {
	for _, schema := range []bool{false, true} {
		dirs := configtest.Large{Rules: 1000, Contexts: 10, Personas: 100, Tests: 1000, Schema: schema}.Write(b)
		b.Run(fmt.Sprintf("schema=%v", schema), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := config.Load(dirs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
