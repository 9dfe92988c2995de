package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	perfRounds     = flag.Int("perf.rounds", 5, "BenchmarkSideBySide: interleaved rounds (router, then forwarder)")
	perfDuration   = flag.Duration("perf.duration", 5*time.Second, "BenchmarkSideBySide: length of one run")
	perfConns      = flag.Int("perf.conns", 32, "BenchmarkSideBySide: concurrent keep-alive connections")
	perfCPUProfile = flag.String("perf.cpuprofile", "", "BenchmarkSideBySide: write the router's CPU profile to this file, the forwarder's to this file.forwarder")
)

// BenchmarkSideBySide compares persona-router with a bare forwarder, each its own process, both
// calling one fake Anam process over loopback; see perfharness_test.go. It runs its rounds
// once, whatever b.N, and reports the figures of every run and the ratios router/forwarder:
//
//	go test ./cmd/persona-router -run '^$' -bench SideBySide -benchtime 1x [-perf.rounds 5] [-perf.duration 5s] [-perf.cpuprofile cpu.out]
func BenchmarkSideBySide(b *testing.B) {
	profile := *perfCPUProfile
	if profile != "" && !strings.HasPrefix(profile, "/") {
		wd, _ := os.Getwd()
		profile = wd + "/" + profile
	}
	s := startSideBySide(b, profile)
	spec := loadSpec{conns: *perfConns, duration: *perfDuration}
	// A warm-up run each: connections, pools and caches filled, the heap grown.
	for _, p := range []*perfProcess{s.router, s.forwarder} {
		if _, err := s.run(p, loadSpec{conns: spec.conns, duration: time.Second}, nil); err != nil {
			b.Fatal(err)
		}
	}
	var rounds []perfRound
	for range *perfRounds {
		var r perfRound
		var err error
		if r.router, err = s.run(s.router, spec, nil); err != nil {
			b.Fatal(err)
		}
		if r.forwarder, err = s.run(s.forwarder, spec, nil); err != nil {
			b.Fatal(err)
		}
		rounds = append(rounds, r)
	}
	if profile != "" {
		s.stopProfiles(b, profile)
	}
	stopRouter(b, s.router)
	sum := summarize(rounds)
	// Printed rather than logged: a benchmark's log is cut to its first lines without -v.
	fmt.Print(sum.String())
	b.ReportMetric(sum.cpu.median, "cpu-ratio")
	b.ReportMetric(sum.rps.median, "rps-ratio")
	b.ReportMetric(sum.p99.median, "p99-ratio")
}

// TestSideBySideSmoke runs the side-by-side harness briefly, so that it keeps working: every
// answer must be a token the fake Anam minted, each figure must be there, and the router must
// have logged and counted every request.
func TestSideBySideSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts three processes")
	}
	s := startSideBySide(t, "")
	check := fakeTokenChecker()
	spec := loadSpec{conns: 8, requests: 150}
	var rounds []perfRound
	for range 2 {
		var r perfRound
		var err error
		if r.router, err = s.run(s.router, spec, check.check); err != nil {
			t.Fatal(err)
		}
		if r.forwarder, err = s.run(s.forwarder, spec, check.check); err != nil {
			t.Fatal(err)
		}
		rounds = append(rounds, r)
	}
	var cpuRouter, cpuForwarder time.Duration
	for i, r := range rounds {
		for _, res := range []loadResult{r.router, r.forwarder} {
			if res.requests != spec.requests || len(res.latencies) != spec.requests {
				t.Errorf("round %d: %d requests answered, want %d", i, res.requests, spec.requests)
			}
			if res.reqPerSec() <= 0 || res.percentile(50) <= 0 || res.percentile(99) < res.percentile(50) {
				t.Errorf("round %d: figures missing: %.0f req/s, p50 %s, p99 %s", i, res.reqPerSec(), res.percentile(50), res.percentile(99))
			}
		}
		cpuRouter += r.router.cpu
		cpuForwarder += r.forwarder.cpu
	}
	// /proc counts CPU in 10 ms ticks: over 300 requests each side has used several.
	if cpuRouter <= 0 || cpuForwarder <= 0 {
		t.Errorf("server CPU not measured: router %s, forwarder %s", cpuRouter, cpuForwarder)
	}
	sum := summarize(rounds)
	if sum.cpu.median <= 0 || sum.rps.median <= 0 || sum.p99.median <= 0 {
		t.Errorf("ratios missing:\n%s", sum)
	}
	t.Log("\n" + sum.String())

	// Each answer was a token the fake minted: as many as it minted, each different, with the
	// same hash sum.
	total := 2 * spec.requests
	var minted int
	var hashes uint64
	if _, err := fmt.Sscan(fetch(t, s.anam.url+"/minted"), &minted, &hashes); err != nil {
		t.Fatal(err)
	}
	if minted != check.count || hashes != check.sum || check.count != 2*total {
		t.Errorf("the fake Anam minted %d tokens (hash sum %x); %d answers were tokens (hash sum %x), of %d requests",
			minted, hashes, check.count, check.sum, 2*total)
	}
	const series = `persona_router_http_requests_total{code="200",route="/api/session-token"} `
	if got := counted(t, s.router.url+"/metrics", series); got != total {
		t.Errorf("%s is %d, want %d", series, got, total)
	}
	stopRouter(t, s.router)
	lines, last := loggedRequests(t, s.logPath)
	if lines != total {
		t.Errorf("the log file holds %d request lines for the token route, want %d", lines, total)
	}
	// The last line is written as the service exits, after any periodic flush.
	if last != "stopped" {
		t.Errorf("the log file's last line says %q, want the shutdown's last line (stopped)", last)
	}
}

func fetch(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// counted reads the value of the series whose line starts with prefix from url.
func counted(t *testing.T, url, prefix string) int {
	t.Helper()
	for line := range strings.Lines(fetch(t, url)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			var n int
			if _, err := fmt.Sscan(v, &n); err != nil {
				t.Fatalf("%s: %q: %v", url, line, err)
			}
			return n
		}
	}
	t.Fatalf("%s: no %q", url, prefix)
	return 0
}

// loggedRequests counts the log file's request lines for the token route answered 200, and
// returns the message of its last line; every line of the file must be a JSON object.
func loggedRequests(t *testing.T, path string) (n int, last string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct {
			Msg    string  `json:"msg"`
			Route  string  `json:"route"`
			Status float64 `json:"status"`
			ID     string  `json:"request_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %v: %q", err, sc.Text())
		}
		if line.Msg == "request" && line.Route == "/api/session-token" && line.Status == 200 && line.ID != "" {
			n++
		}
		last = line.Msg
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n, last
}

// perfRound is one round: a run against each side.
type perfRound struct{ router, forwarder loadResult }

// spread is a ratio's median and range over the rounds.
type spread struct{ median, lo, hi float64 }

func spreadOf(values []float64) spread {
	v := slices.Sorted(slices.Values(values))
	if len(v) == 0 {
		return spread{}
	}
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return spread{median: med, lo: v[0], hi: v[len(v)-1]}
}

func (s spread) String() string { return fmt.Sprintf("%.2f [%.2f–%.2f]", s.median, s.lo, s.hi) }

// perfSummary is the rounds and the ratios router/forwarder of each figure.
type perfSummary struct {
	rounds             []perfRound
	cpu, rps, p50, p99 spread
}

func summarize(rounds []perfRound) perfSummary {
	var cpu, rps, p50, p99 []float64
	for _, r := range rounds {
		cpu = append(cpu, float64(r.router.cpuPerRequest())/float64(max(r.forwarder.cpuPerRequest(), 1)))
		rps = append(rps, r.router.reqPerSec()/r.forwarder.reqPerSec())
		p50 = append(p50, float64(r.router.percentile(50))/float64(max(r.forwarder.percentile(50), 1)))
		p99 = append(p99, float64(r.router.percentile(99))/float64(max(r.forwarder.percentile(99), 1)))
	}
	return perfSummary{rounds: rounds, cpu: spreadOf(cpu), rps: spreadOf(rps), p50: spreadOf(p50), p99: spreadOf(p99)}
}

func (s perfSummary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-6s %-15s %9s %9s %9s %11s %9s\n", "round", "side", "requests", "req/s", "p50", "p99", "cpu/req")
	row := func(i int, side string, r loadResult) {
		fmt.Fprintf(&b, "%-6d %-15s %9d %9.0f %9s %11s %9s\n", i+1, side, r.requests, r.reqPerSec(),
			r.percentile(50).Round(time.Microsecond), r.percentile(99).Round(time.Microsecond), r.cpuPerRequest().Round(time.Microsecond))
	}
	var cpuR, cpuF []float64
	for i, r := range s.rounds {
		row(i, "persona-router", r.router)
		row(i, "forwarder", r.forwarder)
		cpuR = append(cpuR, float64(r.router.cpuPerRequest().Microseconds()))
		cpuF = append(cpuF, float64(r.forwarder.cpuPerRequest().Microseconds()))
	}
	r, f := spreadOf(cpuR), spreadOf(cpuF)
	fmt.Fprintf(&b, "server CPU per request, median [min–max] µs: persona-router %.0f [%.0f–%.0f], forwarder %.0f [%.0f–%.0f]\n",
		r.median, r.lo, r.hi, f.median, f.lo, f.hi)
	fmt.Fprintf(&b, "persona-router / forwarder, median [min–max] over %d rounds: CPU/request %s, req/s %s, p50 %s, p99 %s\n",
		len(s.rounds), s.cpu, s.rps, s.p50, s.p99)
	return b.String()
}
