package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/persona-router/persona-router/internal/anam"
	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/sandbox"
	"github.com/persona-router/persona-router/internal/server"
)

// sandboxClient is an Anam client bound to a fresh in-process fake, as --sandbox wires it.
func sandboxClient() *anam.Client {
	return sandbox.NewClient(10 * time.Second)
}

// bareHandler is the baseline: a plain net/http handler making the same upstream call — the
// persona config the service renders for the benchmark's request, computed once — with no
// routing, no rendering, no logs and no metrics.
func bareHandler(b *testing.B, client *anam.Client, body []byte) http.Handler {
	snap, err := config.Load(config.Dirs{Rules: "../../rules", Personas: "../../personas", SigningSecret: []byte(testSigningSecret)})
	if err != nil {
		b.Fatal(err)
	}
	var in struct {
		Context  string         `json:"context"`
		Metadata map[string]any `json:"metadata"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		b.Fatal(err)
	}
	res := snap.Decide(expression.Input{Context: in.Context, Metadata: in.Metadata}, false)
	request := anam.Bytes(res.Request())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Context  string         `json:"context"`
			Metadata map[string]any `json:"metadata"`
		}
		_ = json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req)
		token, err := client.CreateSessionToken(r.Context(), request)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]string{"sessionToken": token, "persona": "sales"})
	})
}

// fixedConfig serves one snapshot.
type fixedConfig struct{ snap *config.Snapshot }

func (f fixedConfig) Current() *config.Snapshot { return f.snap }

// routerHandler is the service as `serve --sandbox` builds it, with the shipped configuration
// and JSON request logs (to nowhere).
func routerHandler(b *testing.B) http.Handler {
	snap, err := config.Load(config.Dirs{Rules: "../../rules", Personas: "../../personas", SigningSecret: []byte(testSigningSecret)})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := server.New(server.Options{
		Logger:  slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Configs: fixedConfig{snap},
		Anam:    sandboxClient(),
		Metrics: server.NewMetrics(),
	})
	if err != nil {
		b.Fatal(err)
	}
	return srv
}

// loadResult is what one benchmark run measured.
type loadResult struct {
	reqPerSec float64
	p99       time.Duration
}

// BenchmarkTokenEndpoint drives POST /api/session-token over loopback HTTP with concurrent
// keep-alive clients, against the service and against the bare baseline, both calling the
// same kind of in-process fake Anam. Compare the two with benchstat:
//
//	go test ./cmd/persona-router -run '^$' -bench TokenEndpoint -benchmem -benchtime 2s -count 8 > bench.txt
//	benchstat -col /handler bench.txt
func BenchmarkTokenEndpoint(b *testing.B) {
	body := []byte(`{"context": "sales", "metadata": {"region": "US", "product": "Atlas"}}`)
	for _, tc := range []struct {
		name    string
		handler func(*testing.B) http.Handler
	}{
		{"handler=bare", func(b *testing.B) http.Handler { return bareHandler(b, sandboxClient(), body) }},
		{"handler=persona-router", routerHandler},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv := httptest.NewServer(tc.handler(b))
			defer srv.Close()
			res := drive(b, srv.URL+"/api/session-token", body)
			b.ReportMetric(res.reqPerSec, "req/s")
			b.ReportMetric(float64(res.p99.Microseconds()), "p99-µs")
		})
	}
}

// drive sends b.N requests from 4 goroutines per CPU and measures throughput and p99 latency.
func drive(b *testing.B, url string, body []byte) loadResult {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
	var mu sync.Mutex
	var latencies []time.Duration
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			t0 := time.Now()
			resp, err := client.Post(url, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
			local = append(local, time.Since(t0))
		}
		mu.Lock()
		latencies = append(latencies, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(latencies)
	res := loadResult{reqPerSec: float64(len(latencies)) / elapsed.Seconds()}
	if len(latencies) > 0 {
		res.p99 = latencies[len(latencies)*99/100]
	}
	return res
}

// BenchmarkServiceMemory builds the binary, runs it as its own process with --sandbox and the
// shipped configuration, drives it with concurrent clients, and reports the process's peak
// resident memory (VmHWM), the figure an operator's container limit has to cover.
func BenchmarkServiceMemory(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "persona-router")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--sandbox", "--addr", "127.0.0.1:0", "--rules", "../../rules", "--personas", "../../personas")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1] + m[2]
			}
		}
	}()
	var url string
	select {
	case a := <-addr:
		url = "http://" + a + "/api/session-token"
	case <-time.After(30 * time.Second):
		b.Fatal("the service did not start")
	}
	body := []byte(`{"context": "customer-support", "metadata": {"tier": "enterprise", "product": "Atlas"}}`)
	res := drive(b, url, body)
	b.ReportMetric(res.reqPerSec, "req/s")
	peak, err := peakRSS(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-rss-MB")
}

// peakRSS reads a process's peak resident set size from /proc.
func peakRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
