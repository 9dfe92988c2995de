package persona

import (
	"bytes"
	"io"
	"sync"
	"sync/atomic"
)

// Body is a rendered session-token request in a buffer that is used again once nothing reads
// it: after its owner's Release and the Close of every reader Reader handed out. An HTTP
// transport may read a request body after the round trip has returned (when the server answers
// before it has read the whole request), and closes it when it is done; counting the readers
// covers that. A Body that is never released is simply collected.
type Body struct {
	buf  []byte
	refs atomic.Int32
}

// maxPooledBody is the largest buffer kept for reuse: a few requests with big prompts must not
// pin their memory for good.
const maxPooledBody = 64 << 10

var bodies = sync.Pool{New: func() any { return &Body{buf: make([]byte, 0, 2048)} }}

// newBody returns an empty Body with one reference, its owner's.
func newBody() *Body {
	b := bodies.Get().(*Body)
	b.refs.Store(1)
	return b
}

// BodyOf returns a Body holding b, with one reference, its owner's.
func BodyOf(b []byte) *Body {
	body := &Body{buf: b}
	body.refs.Store(1)
	return body
}

// Bytes returns the JSON request. It must not be used after Release.
func (b *Body) Bytes() []byte { return b.buf }

// Reader returns a reader of the request that holds the buffer until it is closed.
func (b *Body) Reader() io.ReadCloser {
	b.refs.Add(1)
	return &bodyReader{Reader: bytes.NewReader(b.buf), body: b}
}

// Release gives the owner's reference back. The buffer is reused once every reader is closed
// too.
func (b *Body) Release() {
	if b == nil {
		return
	}
	if b.refs.Add(-1) == 0 && cap(b.buf) <= maxPooledBody {
		b.buf = b.buf[:0]
		bodies.Put(b)
	}
}

type bodyReader struct {
	*bytes.Reader
	body   *Body
	closed atomic.Bool
}

func (r *bodyReader) Close() error {
	if r.closed.CompareAndSwap(false, true) {
		r.body.Release()
	}
	return nil
}
