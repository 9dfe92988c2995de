package logbuf

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is an underlying writer that keeps every Write it is given.
type recorder struct {
	mu     sync.Mutex
	writes [][]byte
	// fail makes the next fail writes fail, writing nothing.
	fail int
}

var errDiskFull = errors.New("no space left on device")

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		return 0, errDiskFull
	}
	r.writes = append(r.writes, bytes.Clone(p))
	return len(p), nil
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return string(bytes.Join(r.writes, nil))
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.writes)
}

// Lines written concurrently, through many flushes of a small buffer, all reach the writer
// by Close: whole, each once, and in each writer's order.
func TestEveryLineWrittenBeforeCloseIsWrittenWhole(t *testing.T) {
	out := &recorder{}
	w := New(out, 1000, time.Millisecond)
	const writers, lines = 16, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for n := range lines {
				// Lines of different lengths, so that some straddle a buffer's end.
				line := fmt.Sprintf("g%02d n%04d %s end\n", g, n, strings.Repeat("x", (g*n)%90))
				if k, err := w.Write([]byte(line)); k != len(line) || err != nil {
					t.Errorf("Write = %d, %v", k, err)
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if out.count() < 2 {
		t.Fatalf("%d writes: the buffer was never flushed before Close", out.count())
	}
	next := make([]int, writers)
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for _, line := range got {
		var g, n int
		if _, err := fmt.Sscanf(line, "g%02d n%04d", &g, &n); err != nil || g < 0 || g >= writers {
			t.Fatalf("broken line %q", line)
		}
		if want := fmt.Sprintf("g%02d n%04d %s end", g, n, strings.Repeat("x", (g*n)%90)); line != want {
			t.Fatalf("line %q, want %q", line, want)
		}
		if n != next[g] {
			t.Fatalf("writer %d: line %d where line %d was due", g, n, next[g])
		}
		next[g]++
	}
	if len(got) != writers*lines {
		t.Errorf("%d lines, want %d", len(got), writers*lines)
	}
}

// A line waits at most about an interval: it is written without Flush or Close.
func TestLinesAreFlushedPeriodically(t *testing.T) {
	out := &recorder{}
	w := New(out, DefaultSize, 5*time.Millisecond)
	defer w.Close()
	_, _ = w.Write([]byte("one line\n"))
	for deadline := time.Now().Add(10 * time.Second); out.String() != "one line\n"; {
		if time.Now().After(deadline) {
			t.Fatalf("the line was not written within 10s: %q", out.String())
		}
		time.Sleep(time.Millisecond)
	}
}

// A line larger than the buffer is written whole, after what was buffered before it; after
// Close, lines go straight through.
func TestLargeLinesAndLinesAfterClose(t *testing.T) {
	out := &recorder{}
	w := New(out, 16, time.Hour)
	_, _ = w.Write([]byte("short\n"))
	big := strings.Repeat("b", 40) + "\n"
	if n, err := w.Write([]byte(big)); n != len(big) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if got := out.String(); got != "short\n"+big {
		t.Fatalf("written %q, want the short line then the big one", got)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte("after\n"))
	if got := out.String(); got != "short\n"+big+"after\n" {
		t.Errorf("after Close, written %q", got)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// A failed write is reported by Flush and Close, not lost quietly; later lines are still
// written.
func TestWriteErrorsAreReported(t *testing.T) {
	out := &recorder{fail: 1}
	w := New(out, DefaultSize, time.Hour)
	_, _ = w.Write([]byte("lost\n"))
	if err := w.Flush(); !errors.Is(err, errDiskFull) {
		t.Fatalf("Flush = %v, want the write's error", err)
	}
	_, _ = w.Write([]byte("kept\n"))
	if err := w.Close(); !errors.Is(err, errDiskFull) {
		t.Errorf("Close = %v, want the first write error", err)
	}
	if got := out.String(); got != "kept\n" {
		t.Errorf("written %q, want the line after the failure", got)
	}
}
