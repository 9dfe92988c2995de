package main

// The side-by-side harness: persona-router's real binary and a bare net/http forwarder, each
// its own process, both forwarding to one fake Anam process over loopback, driven by a
// closed-loop load generator in the test process. Helper processes are this test binary run
// again with perfRoleEnv naming the role, as os/exec's own tests do.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/persona-router/persona-router/internal/anam"
	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/sandbox"
)

const (
	// perfRoleEnv selects the role a re-executed test binary plays: perfRoleAnam or
	// perfRoleForwarder.
	perfRoleEnv       = "PERSONA_ROUTER_PERF_ROLE"
	perfRoleAnam      = "fake-anam"
	perfRoleForwarder = "forwarder"
	// perfAnamURLEnv is the fake Anam's base URL, for the forwarder.
	perfAnamURLEnv = "PERSONA_ROUTER_PERF_ANAM_URL"
	// perfAPIKey is the only key the fake Anam accepts.
	perfAPIKey = "perf-anam-key"
	// perfCPUProfileEnv, in the router's environment, names the CPU profile the overlay hook
	// writes (see perfProfileHook).
	perfCPUProfileEnv = "PERSONA_ROUTER_PERF_CPUPROFILE"
)

// perfRequest is the token request both sides answer: the shipped sales rule matches it.
var perfRequest = []byte(`{"context": "sales", "metadata": {"region": "US", "product": "Atlas"}}`)

// TestPerfHelperProcess is not a test: it is the entry point of the harness's helper processes,
// and returns at once in a normal run.
func TestPerfHelperProcess(t *testing.T) {
	role := os.Getenv(perfRoleEnv)
	if role == "" {
		return
	}
	// The parent holds our stdin: when it goes away, so do we.
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); os.Exit(0) }()
	if path := os.Getenv(perfCPUProfileEnv); path != "" {
		profileUntilSIGUSR1(path)
	}
	var h http.Handler
	switch role {
	case perfRoleAnam:
		h = &countingFake{fake: &sandbox.Fake{APIKey: perfAPIKey}}
	case perfRoleForwarder:
		fwd, err := newForwarder(os.Getenv(perfAnamURLEnv))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		h = fwd
	default:
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", perfRoleEnv, role)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Printf("addr %s\n", ln.Addr())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintln(os.Stderr, srv.Serve(ln))
	os.Exit(1)
}

// countingFake is the fake Anam, keeping account of the tokens it mints: GET /minted answers
// their number and the XOR of their FNV-1a hashes, which the harness compares with the tokens
// it was answered.
type countingFake struct {
	fake   *sandbox.Fake
	mu     sync.Mutex
	minted int
	sum    uint64
}

func (f *countingFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/minted" {
		f.mu.Lock()
		defer f.mu.Unlock()
		fmt.Fprintf(w, "%d %d\n", f.minted, f.sum)
		return
	}
	rec := &recordingWriter{ResponseWriter: w, status: http.StatusOK}
	f.fake.ServeHTTP(rec, r)
	var answer struct {
		SessionToken string `json:"sessionToken"`
	}
	if rec.status == http.StatusOK && json.Unmarshal(rec.body, &answer) == nil && answer.SessionToken != "" {
		f.mu.Lock()
		f.minted++
		f.sum ^= tokenHash(answer.SessionToken)
		f.mu.Unlock()
	}
}

func tokenHash(token string) uint64 {
	h := fnv.New64a()
	_, _ = io.WriteString(h, token)
	return h.Sum64()
}

// recordingWriter keeps the status and body a handler writes.
type recordingWriter struct {
	http.ResponseWriter
	status int
	body   []byte
}

func (w *recordingWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.body = append(w.body, p...)
	return w.ResponseWriter.Write(p)
}

// forwarder is the baseline: decode the request, send a fixed persona config to Anam, return
// the token. No routing, rendering, logs, metrics, request ids or retries. Its Anam request is
// the one persona-router renders for perfRequest, computed once at start: the forwarder does
// less per request than any real service could.
type forwarder struct {
	url    string
	body   []byte
	client *http.Client
}

func newForwarder(anamURL string) (*forwarder, error) {
	if anamURL == "" {
		return nil, fmt.Errorf("%s is not set", perfAnamURLEnv)
	}
	snap, err := config.Load(config.Dirs{Rules: "../../rules", Personas: "../../personas", SigningSecret: []byte(testSigningSecret)})
	if err != nil {
		return nil, err
	}
	var in struct {
		Context  string         `json:"context"`
		Metadata map[string]any `json:"metadata"`
	}
	if err := json.Unmarshal(perfRequest, &in); err != nil {
		return nil, err
	}
	res := snap.Decide(expression.Input{Context: in.Context, Metadata: in.Metadata, User: map[string]any{}}, false)
	if res.Err != nil {
		return nil, res.Err
	}
	body := bytes.Clone(res.Request())
	res.Release()
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 256, 128
	return &forwarder{url: strings.TrimRight(anamURL, "/") + anam.SessionPath, body: body, client: &http.Client{Transport: t}}, nil
}

func (f *forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Context  string         `json:"context"`
		Metadata map[string]any `json:"metadata"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&in); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, f.url, bytes.NewReader(f.body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Header.Set("Authorization", "Bearer "+perfAPIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		http.Error(w, "anam unavailable", http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	var answer struct {
		SessionToken string `json:"sessionToken"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil || resp.StatusCode != http.StatusOK {
		http.Error(w, "anam failed", http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(struct {
		SessionToken string `json:"sessionToken"`
		Persona      string `json:"persona"`
	}{answer.SessionToken, "sales"})
}

// profileUntilSIGUSR1 is perfProfileHook for the helper processes.
func profileUntilSIGUSR1(path string) {
	f, err := os.Create(path + ".partial")
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		panic(err)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGUSR1)
	go func() {
		<-stop
		pprof.StopCPUProfile()
		if f.Close() == nil {
			_ = os.Rename(path+".partial", path)
		}
	}()
}

// perfProcess is one server process of the harness.
type perfProcess struct {
	name  string
	cmd   *exec.Cmd
	url   string
	stdin io.WriteCloser
	done  chan struct{}
}

// startHelper re-executes this test binary in role and returns once it listens.
func startHelper(t testing.TB, role string, env ...string) *perfProcess {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestPerfHelperProcess$")
	cmd.Env = append(os.Environ(), append([]string{perfRoleEnv + "=" + role}, env...)...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &perfProcess{name: role, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		<-p.done
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	go func() { _, _ = io.Copy(io.Discard, stdout); _ = cmd.Wait(); close(p.done) }()
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "addr ")
	if err != nil || !ok {
		t.Fatalf("helper %s did not start: %q %v", role, line, err)
	}
	p.url = "http://" + addr
	return p
}

// buildRouter builds persona-router's binary. With profileHook it also carries
// perfProfileHook, added through -overlay so that the repository holds no profiling code.
func buildRouter(t testing.TB, dir string, profileHook bool) string {
	t.Helper()
	bin := filepath.Join(dir, "persona-router")
	args := []string{"build", "-o", bin}
	if profileHook {
		hook := filepath.Join(dir, "perfhook.go")
		if err := os.WriteFile(hook, []byte(perfProfileHook), 0o644); err != nil {
			t.Fatal(err)
		}
		pkgDir, err := filepath.Abs(".")
		if err != nil {
			t.Fatal(err)
		}
		overlay, _ := json.Marshal(map[string]any{"Replace": map[string]string{filepath.Join(pkgDir, "zz_perfhook.go"): hook}})
		overlayFile := filepath.Join(dir, "overlay.json")
		if err := os.WriteFile(overlayFile, overlay, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-overlay", overlayFile)
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// perfProfileHook writes a CPU profile of the process to $PERSONA_ROUTER_PERF_CPUPROFILE from
// start until SIGUSR1, then moves it into place.
const perfProfileHook = `package main

import (
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func init() {
	path := os.Getenv("` + perfCPUProfileEnv + `")
	if path == "" {
		return
	}
	f, err := os.Create(path + ".partial")
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		panic(err)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGUSR1)
	go func() {
		<-stop
		pprof.StopCPUProfile()
		if f.Close() == nil {
			os.Rename(path+".partial", path)
		}
	}()
}
`

// startRouter runs the binary with the shipped configuration, JSON logs to logPath and Anam at
// anamURL, and returns once it listens. cpuProfile, when set, is where the profile hook writes.
func startRouter(t testing.TB, bin, anamURL, logPath, cpuProfile string) *perfProcess {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	addrFile := filepath.Join(t.TempDir(), "addr")
	cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--addr-file", addrFile, "--rules", "../../rules", "--personas", "../../personas",
		"--anam-url", anamURL, "--watch=false", "--log-format", "json")
	cmd.Env = []string{"ANAM_API_KEY=" + perfAPIKey, "TOOL_SIGNING_SECRET=" + testSigningSecret}
	if cpuProfile != "" {
		cmd.Env = append(cmd.Env, perfCPUProfileEnv+"="+cpuProfile)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &perfProcess{name: "persona-router", cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	exited := make(chan error, 1)
	go func() { <-p.done; exited <- fmt.Errorf("%v", cmd.ProcessState) }()
	addr, err := waitAddrFile(addrFile, exited)
	if err != nil {
		logs, _ := os.ReadFile(logPath)
		t.Fatalf("%v\n%s", err, logs)
	}
	p.url = "http://" + addr
	return p
}

// stopRouter interrupts the router and waits for it to exit cleanly.
func stopRouter(t testing.TB, p *perfProcess) {
	t.Helper()
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("persona-router did not stop within 20s of an interrupt")
	}
	if !p.cmd.ProcessState.Success() {
		t.Fatalf("persona-router exited with %v", p.cmd.ProcessState)
	}
}

// cpuTime is the CPU time (user and system) pid has used so far, from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields are counted after it.
	i := bytes.LastIndex(data, []byte(") "))
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(data[i+2:]))
	// utime and stime are fields 14 and 15 of the line, 12 and 13 after the name, in clock
	// ticks: USER_HZ, 100 on every Linux architecture Go supports.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * (time.Second / 100), nil
}

// loadResult is what one run against one side measured.
type loadResult struct {
	requests  int
	elapsed   time.Duration
	latencies []time.Duration // sorted
	cpu       time.Duration   // the server process's CPU time during the run
}

func (r loadResult) reqPerSec() float64 { return float64(r.requests) / r.elapsed.Seconds() }
func (r loadResult) cpuPerRequest() time.Duration {
	return r.cpu / time.Duration(max(r.requests, 1))
}
func (r loadResult) percentile(p int) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)*p/100, len(r.latencies)-1)]
}

// loadSpec is one run: conns keep-alive connections, each sending its next request as soon as
// the last is answered, for duration or until requests have been answered in all.
type loadSpec struct {
	conns    int
	duration time.Duration
	requests int
}

// drive runs spec against url+/api/session-token and measures the server process pid's CPU
// over the run. Every answer must be a 200 with a session token; check, when set, gets each
// token.
func drive(url string, pid int, spec loadSpec, check func(token string) error) (loadResult, error) {
	transport := &http.Transport{MaxIdleConnsPerHost: spec.conns, MaxConnsPerHost: spec.conns, DisableCompression: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		firstErr  error
		sent      = make(chan struct{}, max(spec.requests, 1))
	)
	if spec.requests > 0 {
		for range spec.requests {
			sent <- struct{}{}
		}
		close(sent)
	}
	cpu0, err := cpuTime(pid)
	if err != nil {
		return loadResult{}, err
	}
	start := time.Now()
	if spec.duration > 0 {
		time.AfterFunc(spec.duration, cancel)
	}
	var wg sync.WaitGroup
	for range spec.conns {
		wg.Go(func() {
			local := make([]time.Duration, 0, 4096)
			var err error
			for ctx.Err() == nil && err == nil {
				if spec.requests > 0 {
					if _, ok := <-sent; !ok {
						break
					}
				}
				t0 := time.Now()
				err = postToken(client, url, check)
				if err == nil {
					local = append(local, time.Since(t0))
				}
			}
			mu.Lock()
			latencies = append(latencies, local...)
			if err != nil && firstErr == nil {
				firstErr = err
				cancel()
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, err := cpuTime(pid)
	if err != nil {
		return loadResult{}, err
	}
	slices.Sort(latencies)
	return loadResult{requests: len(latencies), elapsed: elapsed, latencies: latencies, cpu: cpu1 - cpu0}, firstErr
}

func postToken(client *http.Client, url string, check func(string) error) error {
	resp, err := client.Post(url+"/api/session-token", "application/json", bytes.NewReader(perfRequest))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var answer struct {
		SessionToken string `json:"sessionToken"`
	}
	err = json.NewDecoder(resp.Body).Decode(&answer)
	switch {
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %d", resp.StatusCode)
	case err != nil:
		return fmt.Errorf("decoding the answer: %w", err)
	case answer.SessionToken == "":
		return errors.New("answer without a sessionToken")
	case check != nil:
		return check(answer.SessionToken)
	}
	return nil
}

// tokenChecker accepts tokens shaped as the fake Anam mints them, each once: JWT-shaped, with
// the fake's sandbox claims and a fresh id. It keeps account of them as countingFake does.
type tokenChecker struct {
	mu    sync.Mutex
	seen  map[string]bool
	count int
	sum   uint64
}

func fakeTokenChecker() *tokenChecker { return &tokenChecker{seen: map[string]bool{}} }

func (c *tokenChecker) check(token string) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return fmt.Errorf("token is not header.payload.signature: %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return fmt.Errorf("token payload: %w", err)
	}
	var claims struct {
		Type    string `json:"type"`
		Sandbox *bool  `json:"sandbox"`
		ID      string `json:"jti"`
		Expires int64  `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return fmt.Errorf("token payload: %w", err)
	}
	if claims.Type != "ephemeral" || claims.Sandbox == nil || !*claims.Sandbox || claims.ID == "" || claims.Expires == 0 {
		return fmt.Errorf("token is not the fake Anam's: %s", payload)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen[claims.ID] {
		return fmt.Errorf("token %s answered twice", claims.ID)
	}
	c.seen[claims.ID] = true
	c.count++
	c.sum ^= tokenHash(token)
	return nil

}

// sideBySide is one harness: the fake Anam, the router and the forwarder, running.
type sideBySide struct {
	anam, router, forwarder *perfProcess
	logPath                 string
}

func startSideBySide(t testing.TB, cpuProfile string) *sideBySide {
	t.Helper()
	dir := t.TempDir()
	bin := buildRouter(t, dir, cpuProfile != "")
	fake := startHelper(t, perfRoleAnam)
	s := &sideBySide{anam: fake, logPath: filepath.Join(dir, "persona-router.log")}
	env := []string{perfAnamURLEnv + "=" + fake.url}
	if cpuProfile != "" {
		env = append(env, perfCPUProfileEnv+"="+cpuProfile+".forwarder")
	}
	s.forwarder = startHelper(t, perfRoleForwarder, env...)
	s.router = startRouter(t, bin, fake.url, s.logPath, cpuProfile)
	return s
}

// run drives one side.
func (s *sideBySide) run(p *perfProcess, spec loadSpec, check func(string) error) (loadResult, error) {
	res, err := drive(p.url, p.cmd.Process.Pid, spec, check)
	if err != nil {
		return res, fmt.Errorf("%s: %w", p.name, err)
	}
	return res, nil
}

// stopProfiles ends the CPU profiles of the router (path) and of the forwarder
// (path.forwarder), and waits until they are written.
func (s *sideBySide) stopProfiles(t testing.TB, path string) {
	t.Helper()
	for _, p := range []struct {
		proc *perfProcess
		path string
	}{{s.router, path}, {s.forwarder, path + ".forwarder"}} {
		if err := p.proc.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			if _, err := os.Stat(p.path); err == nil {
				break
			}
			if i == 500 {
				t.Fatalf("%s wrote no profile to %s", p.proc.name, p.path)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
