package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// findChromium returns the Chromium (or Chrome) the browser test drives.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	// Failing, not skipping: a skipped browser test reads as a passing one in CI.
	t.Fatal("no Chromium found (looked for chromium, chromium-browser, google-chrome in PATH); " +
		"install it: apt-get install -y chromium")
	return ""
}

// playgroundRules is the shipped rules with a metadata schema, for the page to offer its keys.
func playgroundRules(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	shipped, err := filepath.Glob("../../rules/*.yaml")
	if err != nil || len(shipped) == 0 {
		t.Fatalf("no shipped rules: %v", err)
	}
	for _, path := range shipped {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(path)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	schema := `metadata:
  tier:    {type: string, enum: [free, pro, enterprise]}
  product: {type: string, maxLength: 64}
  region:  {type: string, maxLength: 32}
  locale:  {type: string, enum: [en, fr, de]}
  course:  {type: string, maxLength: 128}
`
	if err := os.WriteFile(filepath.Join(dir, "metadata.yaml"), []byte(schema), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPlaygroundInChromium drives the playground page in a real headless Chromium: type the
// admin token, type a request, read the decision off the page; then a refused request.
func TestPlaygroundInChromium(t *testing.T) {
	t.Parallel()
	chromium := findChromium(t)
	const adminToken = "playground-admin-token"
	s := startService(t, map[string]string{"ADMIN_TOKEN": adminToken},
		"--sandbox", "--rules", playgroundRules(t), "--personas", "../../personas")

	// The whole test, browser included, ends within this.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.WindowSize(1280, 1000))
	if os.Geteuid() == 0 {
		// Chromium refuses to run as root with its sandbox on (CI runs as root).
		opts = append(opts, chromedp.NoSandbox)
	}
	ctx, cancel = chromedp.NewExecAllocator(ctx, opts...)
	defer cancel()
	ctx, cancel = chromedp.NewContext(ctx)
	defer cancel()

	// Every script error and every console error or warning (a Content-Security-Policy
	// violation is one) fails the test.
	var mu sync.Mutex
	var problems []string
	if err := chromedp.Listen(ctx, func(ev any) {
		var p string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			p = "exception: " + ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				p += " " + ev.ExceptionDetails.Exception.Description
			}
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError || ev.Entry.Level == log.EntryLevelWarning {
				p = fmt.Sprintf("console %s (%s): %s %s", ev.Entry.Level, ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				p = "console." + string(ev.Type) + " called"
			}
		}
		if p != "" {
			mu.Lock()
			problems = append(problems, p)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("starting Chromium (%s): %v", chromium, err)
	}

	page := s.url + "/admin/playground"
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// waitState waits until the page says it is in state: it leaves "ready" on every edit and
	// comes back once both answers are shown.
	waitState := func(state string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := chromedp.Do(wctx, chromedp.WaitReady(chromedp.CSS(`body[data-state="`+state+`"]`))); err != nil {
			got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.dataset.state + ": " + document.getElementById("status").textContent`))
			t.Fatalf("page never reached state %s (it is %q): %v", state, got, err)
		}
	}
	text := func(id string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
		if err != nil {
			t.Fatalf("reading #%s: %v", id, err)
		}
		return strings.TrimSpace(v)
	}
	visible := func(id string) bool {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("`+id+`").checkVisibility()`))
		if err != nil {
			t.Fatalf("reading #%s: %v", id, err)
		}
		return v
	}

	do("opening the playground", chromedp.Navigate(page))
	waitState("needs-token")
	do("typing the admin token", chromedp.SendKeys(chromedp.ID("token"), adminToken), chromedp.Click(chromedp.ID("token-save")))
	waitState("ready")
	if keys := text("schema-keys"); !strings.Contains(keys, "tier") || !strings.Contains(keys, `"enterprise"`) {
		t.Errorf("declared metadata keys shown %q, want tier and its values", keys)
	}

	do("typing a request",
		chromedp.SendKeys(chromedp.ID("context"), "customer-support"),
		chromedp.SendKeys(chromedp.ID("metadata"), `{"tier": "enterprise", "product": "Atlas"}`),
		chromedp.SendKeys(chromedp.ID("user"), `{"id": "u-1"}`),
	)
	waitState("ready")
	if got := text("persona"); got != "enterprise-support" {
		t.Errorf("persona shown %q, want enterprise-support", got)
	}
	if got := text("rule"); got != "enterprise-support" {
		t.Errorf("rule shown %q, want enterprise-support", got)
	}
	if got := text("overlays"); got != "none" {
		t.Errorf("overlays shown %q, want none", got)
	}
	if visible("refusal") {
		t.Error("a refusal is shown for a request the endpoint accepts")
	}
	// support-guest is tried first and fails on its second condition.
	if trace := text("trace"); !strings.Contains(trace, "support-guest") || !strings.Contains(trace, "user.id == nil") {
		t.Errorf("trace shown %q, want support-guest failing on user.id == nil", trace)
	}
	if req := text("request"); !strings.Contains(req, `"personaConfig"`) || !strings.Contains(req, "senior support engineer for Atlas") {
		t.Errorf("request to Anam shown %q, want the rendered enterprise persona", req)
	}
	if split := text("split"); !strings.Contains(split, "enterprise-support") || !strings.Contains(split, "100.0%") {
		t.Errorf("split shown %q, want enterprise-support serving everyone", split)
	}

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	saved := filepath.Join(t.TempDir(), "playground.png")
	if err := os.WriteFile(saved, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", saved)
	if os.Getenv("UPDATE_SCREENSHOT") == "1" {
		if err := os.WriteFile("../../docs/playground.png", shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// SendKeys types after what is there: erase it first, as a person would.
	do("typing a refused context", chromedp.SendKeys(chromedp.ID("context"), strings.Repeat(kb.Backspace, len("customer-support"))+"a b"))
	waitState("ready")
	if !visible("refusal") || visible("decision") {
		t.Error("a refused request does not show the refusal instead of a decision")
	}
	if got := text("refusal-status") + " " + text("refusal-code"); got != "400 invalid_request" {
		t.Errorf("refusal shown %q, want 400 invalid_request", got)
	}
	if got := text("refusal-error"); !strings.Contains(got, "context") {
		t.Errorf("refusal reason shown %q, want the context rule", got)
	}

	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if loc != page {
		t.Errorf("page address became %q, want %q", loc, page)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("the page reported %s", p)
	}
}
