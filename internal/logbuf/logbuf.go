// Package logbuf batches log lines on their way to a file or pipe: one write(2) for many
// lines instead of one per line, the request path's largest cost when every request logs.
package logbuf

import (
	"io"
	"sync"
	"time"
)

const (
	// DefaultSize is the buffer a Writer fills before writing it out.
	DefaultSize = 64 << 10
	// DefaultInterval is the longest a line waits in the buffer.
	DefaultInterval = 100 * time.Millisecond
)

// Writer buffers what is written to it and writes it out when the buffer is full, every
// interval, on Flush and on Close. Each Write is kept whole and in order: a log handler that
// writes one line per Write (as log/slog's do) never sees its lines interleaved or split.
// Lines still buffered when the process dies without Close are lost; Close loses none.
//
// Write does not fail while it buffers: the first error of a later write to the underlying
// writer is kept, and returned by Flush and Close. The lines of a failed write are dropped
// (part of them may have been written), and later lines are tried again.
type Writer struct {
	out  io.Writer
	size int

	// mu guards buf and closed. It is taken before writeMu, never after.
	mu     sync.Mutex
	buf    []byte
	closed bool

	// writeMu orders the writes to out as the buffers were taken, and guards err.
	writeMu sync.Mutex
	err     error

	stop, stopped chan struct{}
}

var buffers sync.Pool

// New returns a Writer of out with a buffer of size bytes, flushed every interval.
func New(out io.Writer, size int, interval time.Duration) *Writer {
	w := &Writer{out: out, size: size, stop: make(chan struct{}), stopped: make(chan struct{})}
	w.buf = w.newBuffer()
	go w.flushEvery(interval)
	return w
}

func (w *Writer) newBuffer() []byte {
	if b, ok := buffers.Get().(*[]byte); ok && cap(*b) >= w.size {
		return (*b)[:0]
	}
	return make([]byte, 0, w.size)
}

func (w *Writer) flushEvery(interval time.Duration) {
	defer close(w.stopped)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			_ = w.Flush()
		}
	}
}

// Write buffers a copy of p, or writes it out at once (after what is buffered) when it is
// larger than the buffer or the Writer is closed.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	if !w.closed && len(w.buf)+len(p) <= w.size {
		w.buf = append(w.buf, p...)
		w.mu.Unlock()
		return len(p), nil
	}
	full := w.take()
	direct := w.closed || len(p) > w.size
	if !direct {
		w.buf = append(w.buf, p...)
	}
	w.writeMu.Lock()
	w.mu.Unlock()
	defer w.writeMu.Unlock()
	w.writeOut(full)
	if !direct {
		return len(p), nil
	}
	n, err := w.out.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// take swaps the buffer for an empty one and returns what it held; nil when empty. The
// caller holds mu.
func (w *Writer) take() []byte {
	if len(w.buf) == 0 {
		return nil
	}
	full := w.buf
	w.buf = w.newBuffer()
	return full
}

// writeOut writes a taken buffer and recycles it. The caller holds writeMu.
func (w *Writer) writeOut(b []byte) {
	if len(b) == 0 {
		return
	}
	if _, err := w.out.Write(b); err != nil && w.err == nil {
		w.err = err
	}
	b = b[:0]
	buffers.Put(&b)
}

// Flush writes out what is buffered, and returns the first error any write to the
// underlying writer has met so far.
func (w *Writer) Flush() error {
	w.mu.Lock()
	full := w.take()
	w.writeMu.Lock()
	w.mu.Unlock()
	defer w.writeMu.Unlock()
	w.writeOut(full)
	return w.err
}

// Close writes out what is buffered and stops the periodic flush; later writes go straight to
// the underlying writer. It returns the first error any write to it has met.
func (w *Writer) Close() error {
	w.mu.Lock()
	already := w.closed
	w.closed = true
	w.mu.Unlock()
	if !already {
		close(w.stop)
		<-w.stopped
	}
	return w.Flush()
}
