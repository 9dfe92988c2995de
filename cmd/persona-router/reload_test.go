package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const adminToken = "admin-test-token"

// personaYAML is a valid persona named name.
func personaYAML(name string) string {
	return fmt.Sprintf("name: %q\navatarId: 30fa96d0-26c4-4e55-94a0-517025942e18\nvoiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b\n", name)
}

// liveConfig is a configuration in a temporary directory that a test edits while the service
// runs on it.
type liveConfig struct {
	root, rules, personas string
}

func newLiveConfig(t *testing.T) *liveConfig {
	t.Helper()
	root := t.TempDir()
	c := &liveConfig{root: root, rules: filepath.Join(root, "rules"), personas: filepath.Join(root, "personas")}
	c.write(t, "personas/default.yaml", personaYAML("One"))
	c.write(t, "rules/routes.yaml", "rules:\n  - {name: sales, when: 'context == \"sales\"', persona: default}\n")
	return c
}

func (c *liveConfig) path(name string) string { return filepath.Join(c.root, filepath.FromSlash(name)) }

func (c *liveConfig) write(t *testing.T, name, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(c.path(name)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.path(name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (c *liveConfig) flags(extra ...string) []string {
	return append([]string{"--rules", c.rules, "--personas", c.personas}, extra...)
}

// startLive runs the service on c with the admin API on and a fake Anam.
func startLive(t *testing.T, c *liveConfig, extra ...string) *instance {
	t.Helper()
	u := newUpstream(t, nil)
	return startService(t, map[string]string{"ANAM_API_KEY": testKey, "ADMIN_TOKEN": adminToken}, c.flags(append(extra, "--anam-url", u.URL)...)...)
}

// liveName is the name of the persona the service would render now for a request without
// context.
func (s *instance) liveName(t *testing.T) string {
	t.Helper()
	a := s.post(t, "/admin/explain", []byte(`{}`), "Authorization", "Bearer "+adminToken)
	pc, _ := a.body["personaConfig"].(map[string]any)
	name, _ := pc["name"].(string)
	return name
}

func (s *instance) waitLive(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if s.liveName(t) == name {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("persona %q never went live (serving %q)\n%s", name, s.liveName(t), s.logs.String())
}

// adminConfig returns GET /admin/config.
func (s *instance) adminConfig(t *testing.T) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.url+"/admin/config", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	a := do(t, req)
	if a.status != http.StatusOK {
		t.Fatalf("/admin/config: %d %s", a.status, a.raw)
	}
	return a.body
}

// metric returns the value of one series from /metrics.
func (s *instance) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics has no %s", series)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func TestReloadOnEveryKindOfEdit(t *testing.T) {
	t.Parallel()
	t.Run("in-place write", func(t *testing.T) {
		c := newLiveConfig(t)
		s := startLive(t, c)
		c.write(t, "personas/default.yaml", personaYAML("Two"))
		s.waitLive(t, "Two")
	})
	t.Run("editor atomic save", func(t *testing.T) {
		c := newLiveConfig(t)
		s := startLive(t, c)
		c.write(t, "personas/.default.yaml.swp", "garbage: [")
		c.write(t, "personas/default.yaml~", "garbage: [")
		c.write(t, "personas/.default.yaml.tmp", personaYAML("Two"))
		if err := os.Rename(c.path("personas/.default.yaml.tmp"), c.path("personas/default.yaml")); err != nil {
			t.Fatal(err)
		}
		s.waitLive(t, "Two")
	})
	t.Run("create and delete", func(t *testing.T) {
		c := newLiveConfig(t)
		s := startLive(t, c)
		c.write(t, "personas/night.yaml", personaYAML("Night"))
		c.write(t, "rules/night.yaml", "rules:\n  - {name: night, when: 'true', persona: night}\n")
		s.waitLive(t, "Night")
		if err := os.Remove(c.path("rules/night.yaml")); err != nil {
			t.Fatal(err)
		}
		s.waitLive(t, "One")
	})
	t.Run("kubernetes configmap swap", func(t *testing.T) {
		c := newLiveConfig(t)
		// A ConfigMap volume: visible files are symlinks into ..data, itself a symlink to a
		// timestamped directory.
		mount := filepath.Join(c.root, "cm")
		version := func(n int, name string) {
			dir := filepath.Join(mount, fmt.Sprintf("..2026_11_26_%02d", n))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "default.yaml"), []byte(personaYAML(name)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		version(1, "One")
		must(t, os.Symlink("..2026_11_26_01", filepath.Join(mount, "..data")))
		must(t, os.Symlink("..data/default.yaml", filepath.Join(mount, "default.yaml")))
		c.personas = mount
		s := startLive(t, c)
		if got := s.liveName(t); got != "One" {
			t.Fatalf("serving %q", got)
		}
		version(2, "Two")
		must(t, os.Symlink("..2026_11_26_02", filepath.Join(mount, "..data_tmp")))
		must(t, os.Rename(filepath.Join(mount, "..data_tmp"), filepath.Join(mount, "..data")))
		must(t, os.RemoveAll(filepath.Join(mount, "..2026_11_26_01")))
		s.waitLive(t, "Two")
	})
	t.Run("directory deleted and recreated", func(t *testing.T) {
		c := newLiveConfig(t)
		s := startLive(t, c)
		must(t, os.RemoveAll(c.personas))
		waitFor(t, func() bool { return s.adminConfig(t)["lastReload"].(map[string]any)["ok"] == false })
		if got := s.liveName(t); got != "One" {
			t.Errorf("after the directory vanished, serving %q, want the last good One", got)
		}
		if errs := fmt.Sprint(s.adminConfig(t)["lastReload"].(map[string]any)["errors"]); !strings.Contains(errs, "personas directory does not exist") {
			t.Errorf("lastReload errors = %s", errs)
		}
		c.write(t, "personas/default.yaml", personaYAML("Reborn"))
		s.waitLive(t, "Reborn")
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestBadEditsNeverGoLive(t *testing.T) {
	t.Parallel()
	c := newLiveConfig(t)
	s := startLive(t, c)
	good := s.adminConfig(t)["version"]
	for _, tc := range []struct {
		name, file, text, remove, wantErr string
	}{
		{"syntax error", "personas/default.yaml", "name: One\nsystemPrompt: Note: be brief\n", "", "default.yaml:2:1: YAML syntax error"},
		{"default persona deleted", "personas/other.yaml", personaYAML("Other"), "personas/default.yaml", `personas:1:1: no "default" persona`},
		{"failing rule test", "rules/tests.yaml", "tests:\n  - {name: sales is special, request: {context: sales}, expect: {rule: null}}\n", "", `tests.yaml:2:72: test "sales is special" failed: expect.rule: got "sales" (`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.metric(t, `persona_router_config_reloads_total{result="failure"}`)
			c.write(t, tc.file, tc.text)
			if tc.remove != "" {
				must(t, os.Remove(c.path(tc.remove)))
			}
			waitFor(t, func() bool {
				return s.metric(t, `persona_router_config_reloads_total{result="failure"}`) > before &&
					strings.Contains(fmt.Sprint(s.adminConfig(t)["lastReload"]), tc.wantErr)
			})
			cfg := s.adminConfig(t)
			last := cfg["lastReload"].(map[string]any)
			if cfg["version"] != good || last["ok"] != false || last["trigger"] != "watch" {
				t.Errorf("/admin/config = %v", cfg)
			}
			if got := s.liveName(t); got != "One" {
				t.Errorf("serving %q, want the last good One", got)
			}
			if v := s.metric(t, "persona_router_config_last_reload_successful"); v != 0 {
				t.Errorf("last_reload_successful = %v, want 0", v)
			}
			if a := s.post(t, "/api/session-token", nil); a.status != 200 {
				t.Errorf("token request after a rejected reload: %d %s", a.status, a.raw)
			}
			resp, err := http.Get(s.url + "/readyz")
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("/readyz after a rejected reload: %v %v", resp, err)
			}
			resp.Body.Close()
			if !strings.Contains(s.logs.String(), "configuration reload rejected") {
				t.Error("no log line for the rejected reload")
			}

			// Repair: back to the good configuration, which goes live again.
			if tc.remove != "" {
				c.write(t, tc.remove, personaYAML("One"))
			}
			if tc.file == "personas/default.yaml" {
				c.write(t, tc.file, personaYAML("One"))
			} else {
				must(t, os.Remove(c.path(tc.file)))
			}
			waitFor(t, func() bool { return s.metric(t, "persona_router_config_last_reload_successful") == 1 })
			if v := s.adminConfig(t)["version"]; v != good {
				t.Errorf("repaired version %v, want %v", v, good)
			}
		})
	}
	if v := s.metric(t, `persona_router_config_info{version="`+good.(string)+`"}`); v != 1 {
		t.Errorf("config_info = %v", v)
	}
	if v := s.metric(t, "persona_router_personas"); v != 1 {
		t.Errorf("persona_router_personas = %v", v)
	}
	if v := s.metric(t, "persona_router_rules"); v != 1 {
		t.Errorf("persona_router_rules = %v", v)
	}
}

func TestSIGHUPReloadsWithWatchingOff(t *testing.T) {
	c := newLiveConfig(t)
	s := startLive(t, c, "--watch=false")
	// A witness watches the same files: once it has reloaded an edit, and then a second one,
	// a watcher of s would have reloaded the first edit too.
	witness := startLive(t, c)
	c.write(t, "personas/default.yaml", personaYAML("Two"))
	witness.waitLive(t, "Two")
	c.write(t, "personas/default.yaml", personaYAML("Three"))
	witness.waitLive(t, "Three")
	if got := s.liveName(t); got != "One" {
		t.Fatalf("with --watch=false an edit went live (%q)", got)
	}
	if n := s.metric(t, `persona_router_config_reload_requests_total{trigger="watch"}`); n != 0 {
		t.Fatalf("with --watch=false the watcher asked for %v reloads", n)
	}
	must(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	s.waitLive(t, "Three")
	if last := s.adminConfig(t)["lastReload"].(map[string]any); last["trigger"] != "sighup" || last["ok"] != true {
		t.Errorf("lastReload = %v", last)
	}
	// SIGHUP always runs the loader, even when nothing changed.
	before := s.metric(t, `persona_router_config_reloads_total{result="success"}`)
	must(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	waitFor(t, func() bool { return s.metric(t, `persona_router_config_reloads_total{result="success"}`) == before+1 })
}

func TestAdminReload(t *testing.T) {
	t.Parallel()
	c := newLiveConfig(t)
	s := startLive(t, c, "--watch=false")
	c.write(t, "personas/default.yaml", personaYAML("Two"))
	a := s.post(t, "/admin/reload", nil, "Authorization", "Bearer "+adminToken)
	if version, ok := a.body["version"].(string); a.status != 200 || a.body["ok"] != true || a.body["trigger"] != "admin" || !ok || version == "" {
		t.Fatalf("reload: %d %s", a.status, a.raw)
	}
	if _, ok := a.body["durationMs"].(float64); !ok {
		t.Errorf("durationMs missing: %s", a.raw)
	}
	if got := s.liveName(t); got != "Two" {
		t.Errorf("serving %q after /admin/reload", got)
	}

	c.write(t, "rules/broken.yaml", "rules:\n  - {name: x, when: 'contxt == 1', persona: nobody}\n")
	a = s.post(t, "/admin/reload", nil, "Authorization", "Bearer "+adminToken)
	errs, _ := a.body["errors"].([]any)
	if a.status != http.StatusUnprocessableEntity || a.body["code"] != "invalid_config" || len(errs) != 1 ||
		!strings.Contains(errs[0].(string), "broken.yaml:2:22: when: unknown name contxt") {
		t.Errorf("bad reload: %d %s", a.status, a.raw)
	}
	if got := s.liveName(t); got != "Two" {
		t.Errorf("serving %q after a rejected reload", got)
	}
	if a := s.post(t, "/admin/reload", nil); a.status != http.StatusUnauthorized {
		t.Errorf("reload without the admin token: %d", a.status)
	}

	cfg := s.adminConfig(t)
	rules, _ := cfg["rules"].([]any)
	if len(rules) != 1 || fmt.Sprint(rules[0]) != "map[name:sales persona:default priority:0]" ||
		fmt.Sprint(cfg["personas"]) != "[default]" || cfg["loadedAt"] == nil {
		t.Errorf("/admin/config = %v", cfg)
	}
}

func TestPollingFallback(t *testing.T) {
	t.Parallel()
	c := newLiveConfig(t)
	s := startLive(t, c, "--watch=false", "--poll-interval", "100ms")
	c.write(t, "personas/default.yaml", personaYAML("Polled"))
	s.waitLive(t, "Polled")
	if last := s.adminConfig(t)["lastReload"].(map[string]any); last["trigger"] != "poll" {
		t.Errorf("lastReload = %v", last)
	}
}

func TestWatcherReloadsOncePerRealChange(t *testing.T) {
	t.Parallel()
	c := newLiveConfig(t)
	s := startLive(t, c)
	reloads := func() float64 { return s.metric(t, `persona_router_config_reloads_total{result="success"}`) }
	requests := func() float64 { return s.metric(t, `persona_router_config_reload_requests_total{trigger="watch"}`) }
	start := reloads()

	// A touch changes no content: the watcher asks, and nothing reloads.
	now := time.Now().Add(time.Minute)
	must(t, os.Chtimes(c.path("personas/default.yaml"), now, now))
	c.write(t, "personas/.default.yaml.swp", "swap")
	waitFor(t, func() bool { return requests() >= 1 })
	if got := reloads(); got != start {
		t.Errorf("a touch caused %v reloads", got-start)
	}

	// A burst of writes is one reload. Written back to back, the burst takes far less than the
	// watcher's debounce.
	for i := range 5 {
		c.write(t, "personas/default.yaml", personaYAML(fmt.Sprintf("Burst %d", i)))
	}
	s.waitLive(t, "Burst 4")
	if got := reloads(); got != start+1 {
		t.Errorf("a burst of 5 writes caused %v reloads, want 1", got-start)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestTortureReloadsUnderLoad sends token requests without pause while the configuration
// switches back and forth between two valid versions and through invalid edits. Every request
// must succeed, and every persona config that reaches Anam must be wholly one version: rules
// and personas of one snapshot, never a mix.
func TestTortureReloadsUnderLoad(t *testing.T) {
	t.Parallel()
	c := newLiveConfig(t)
	// Each version's rule test pins the default persona of the same version, and its rule
	// names a persona only that version has, so a directory caught half-written is rejected.
	setVersion := func(v string) {
		other := map[string]string{"A": "b", "B": "a"}[v]
		lower := strings.ToLower(v)
		c.write(t, "personas/p"+lower+".yaml", personaYAML("P"+v)+"systemPrompt: \"version "+v+" persona\"\n")
		c.write(t, "personas/default.yaml", personaYAML("Default "+v)+"systemPrompt: \"version "+v+" default\"\n")
		c.write(t, "rules/routes.yaml", fmt.Sprintf(`rules:
  - name: x
    when: context == "x"
    persona: p%s
    set: {languageCode: %s}
tests:
  - {name: default is %s, request: {}, expect: {rule: null, personaConfig: {name: "Default %s"}}}
`, lower, map[string]string{"A": "en", "B": "fr"}[v], v, v))
		_ = os.Remove(c.path("personas/p" + other + ".yaml"))
	}
	setVersion("A")
	u := newUpstream(t, nil)
	s := startService(t, map[string]string{"ANAM_API_KEY": testKey, "ADMIN_TOKEN": adminToken}, c.flags("--anam-url", u.URL)...)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failures, total atomic.Int64
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := `{"context": "x"}`
				if (g+i)%2 == 0 {
					body = `{}`
				}
				resp, err := client.Post(s.url+"/api/session-token", "application/json", strings.NewReader(body))
				ok := err == nil && resp.StatusCode == http.StatusOK
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				total.Add(1)
				if !ok {
					failures.Add(1)
				}
			}
		}()
	}

	// Each step waits for what it changed to be applied (or rejected), not for a time, and
	// for requests to have run against it: the torture is as strong on a slow machine.
	counter := func(result string) float64 {
		return s.metric(t, `persona_router_config_reloads_total{result="`+result+`"}`)
	}
	underLoad := func() {
		from := total.Load()
		waitFor(t, func() bool { return total.Load() >= from+8 })
	}
	rng := rand.New(rand.NewPCG(7, 11))
	versions := []string{"B", "A"}
	// changes counts the steps that switch versions: each is applied by at least one reload.
	serving, broken, changes := "A", 0, 0
	for i := range 20 {
		switch rng.IntN(4) {
		case 0:
			failed := counter("failure")
			c.write(t, "rules/zz-broken.yaml", "rules: [")
			waitFor(t, func() bool { return counter("failure") > failed })
			underLoad()
			applied := counter("success")
			must(t, os.Remove(c.path("rules/zz-broken.yaml")))
			waitFor(t, func() bool { return counter("success") > applied })
			broken++
		case 1:
			setVersion(versions[i%2])
			s.post(t, "/admin/reload", nil, "Authorization", "Bearer "+adminToken)
			changes, serving = changes+btoi(serving != versions[i%2]), versions[i%2]
		default:
			setVersion(versions[i%2])
			changes, serving = changes+btoi(serving != versions[i%2]), versions[i%2]
		}
		s.waitLive(t, "Default "+serving)
		underLoad()
	}
	close(stop)
	wg.Wait()

	if n := failures.Load(); n > 0 {
		t.Errorf("%d of %d token requests failed during reloads", n, total.Load())
	}
	reqs := u.requests()
	seen := map[string]int{}
	for _, r := range reqs {
		pc := r.body["personaConfig"].(map[string]any)
		name, prompt, lang := fmt.Sprint(pc["name"]), fmt.Sprint(pc["systemPrompt"]), fmt.Sprint(pc["languageCode"])
		var v string
		switch {
		case name == "Default A" && prompt == "version A default" && lang == "<nil>":
			v = "A"
		case name == "Default B" && prompt == "version B default" && lang == "<nil>":
			v = "B"
		case name == "PA" && prompt == "version A persona" && lang == "en":
			v = "A"
		case name == "PB" && prompt == "version B persona" && lang == "fr":
			v = "B"
		default:
			t.Fatalf("a persona config mixing versions reached Anam: %v", pc)
		}
		seen[v]++
	}
	if seen["A"] == 0 || seen["B"] == 0 {
		t.Errorf("versions served: %v; want both A and B", seen)
	}
	ok, rejected := counter("success"), counter("failure")
	// At start-up, one per switch, and one per repair of a broken step.
	if want := float64(1 + changes + broken); broken == 0 || rejected < float64(broken) || ok < want {
		t.Errorf("%v reloads applied and %v rejected; want at least %v applied and %d rejected", ok, rejected, want, broken)
	}
	t.Logf("%d requests, %d reached Anam (%v), reloads: %v applied, %v rejected", total.Load(), len(reqs), seen, ok, rejected)
}
