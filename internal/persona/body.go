package persona

import (
	"sync"
	"sync/atomic"
)

// Body is a rendered session-token request in a buffer that is used again after its owner's
// Release. Whoever sends it copies what it sends (the Anam client does: an HTTP transport may
// read a request body after the round trip has returned), so Release may follow the call at
// once. A Body that is never released is simply collected.
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

// Release gives the buffer back for reuse.
func (b *Body) Release() {
	if b == nil {
		return
	}
	if b.refs.Add(-1) == 0 && cap(b.buf) <= maxPooledBody {
		b.buf = b.buf[:0]
		bodies.Put(b)
	}
}
