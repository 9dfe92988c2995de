package reload

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/persona-router/persona-router/internal/config/configtest"
)

// slowRules is a rules file whose tests each evaluate a rule near the expression budget: every
// evaluation is bounded, but n of them take a while.
func slowRules(n int) string {
	var b strings.Builder
	b.WriteString("rules:\n  - name: slow\n    when: any(1..2400, metadata.b contains metadata.a)\n    persona: p0\ntests:\n")
	a := strings.Repeat("ab", 500)
	fmt.Fprintf(&b, "  - name: t0\n    request: {metadata: &md {a: %q, b: %q}}\n    expect: {rule: null}\n", a, a[:400])
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "  - name: t%d\n    request: {metadata: *md}\n    expect: {rule: null}\n", i)
	}
	return b.String()
}

// A reload that takes longer than its deadline is rejected; the last good configuration keeps
// serving, and the next reload is not held up by the one abandoned.
func TestReloadPastItsDeadlineIsRejected(t *testing.T) {
	dirs := configtest.Large{Rules: 2, Contexts: 1, Personas: 2}.Write(t)
	m, err := New(dirs, 200*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	good := m.Current().Version
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	slow := filepath.Join(dirs.Rules, "slow.yaml")
	// 0.4–2 ms an evaluation under the race detector: 4,000 tests take seconds.
	if err := os.WriteFile(slow, []byte(slowRules(4000)), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := m.Reload(context.Background(), TriggerAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if st.OK || len(st.Errors) != 1 || !strings.Contains(st.Errors[0], "reload took longer than 200ms") {
		t.Fatalf("slow reload: %+v, want it rejected for its deadline", st)
	}
	if strings.Contains(st.Errors[0], ":0:0") {
		t.Errorf("the deadline error has a made-up position: %q", st.Errors[0])
	}
	if v := m.Current().Version; v != good {
		t.Fatalf("serving %s after the rejected reload, want the last good %s", v, good)
	}

	// The fix goes live at once.
	if err := os.WriteFile(slow, []byte(slowRules(1)), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err = m.Reload(context.Background(), TriggerAdmin)
	if err != nil || !st.OK {
		t.Fatalf("reload of the fix: %+v, %v", st, err)
	}
	if m.Current().Version == good {
		t.Fatal("the fix did not go live")
	}
}
