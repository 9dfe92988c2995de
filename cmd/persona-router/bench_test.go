package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The token endpoint's speed is measured side by side with a bare forwarder, each its own
// process: BenchmarkSideBySide in perf_test.go.

// BenchmarkServiceMemory builds the binary, runs it as its own process with the shipped
// configuration against a fake Anam process, drives it with concurrent clients, and reports the
// process's peak resident memory (VmHWM), the figure an operator's container limit has to cover.
func BenchmarkServiceMemory(b *testing.B) {
	dir := b.TempDir()
	bin := buildRouter(b, dir, false)
	fake := startHelper(b, perfRoleAnam)
	router := startRouter(b, bin, fake.url, filepath.Join(dir, "persona-router.log"), "")
	res, err := drive(router.url, router.cmd.Process.Pid, loadSpec{conns: 32, duration: 5 * time.Second}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.reqPerSec(), "req/s")
	peak, err := peakRSS(router.cmd.Process.Pid)
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
