package server

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/gin-gonic/gin"
)

// tokenBodyFields names the token body's fields in decodeBody's messages.
const tokenBodyFields = "context, metadata"

// decodeTokenBody decodes the token endpoint's body into dst, with decodeBody's answer for
// every body. The usual body — an object with a context string and flat metadata of strings,
// numbers, booleans and nulls — is read by quickTokenBody in one pass, without reflection: the
// general decoder costs several microseconds per request. Any other body, and any body whose
// reading fails, goes to decodeBody's decoder with what was already read put back in front of
// the rest of the stream: the decoder sees the same bytes and the same read error at the same
// place, so it answers as it would have alone. The body is read as the decoder would read it:
// no further once what was read cannot begin a body of the usual kind.
// FuzzTokenBodyDecodesAsDecodeBody holds the two paths to the same results.
func decodeTokenBody(c *gin.Context, dst *tokenBody) *apiError {
	return readTokenBody(http.MaxBytesReader(c.Writer, c.Request.Body, maxBody), dst)
}

// bodyBuffers holds the buffers token bodies are read into; a body that does not fit is
// decoded by the general decoder.
var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// maxQuickReads bounds the reads of a body the quick path waits for.
const maxQuickReads = 8

// readTokenBody is decodeTokenBody on body, a request body already bounded to maxBody.
func readTokenBody(body io.Reader, dst *tokenBody) *apiError {
	bp := bodyBuffers.Get().(*[]byte)
	defer bodyBuffers.Put(bp)
	buf := (*bp)[:0]
	for reads := 0; ; reads++ {
		// A body that does not fit, or that trickles in, goes to the decoder, which reads on
		// from where it is: the quick path parses the whole buffer again after every read.
		if len(buf) == cap(buf) || reads == maxQuickReads {
			return decodeFrom(io.MultiReader(bytes.NewReader(buf), body), dst, tokenBodyFields)
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case err == io.EOF:
			if quickTokenBody(buf, true, dst) == quickDone {
				return nil
			}
			return decodeFrom(bytes.NewReader(buf), dst, tokenBodyFields)
		case err != nil:
			return decodeFrom(io.MultiReader(bytes.NewReader(buf), errReader{err}), dst, tokenBodyFields)
		case quickTokenBody(buf, false, dst) == quickNo:
			return decodeFrom(io.MultiReader(bytes.NewReader(buf), body), dst, tokenBodyFields)
		}
	}
}

// errReader fails every read with err: a failed read replayed.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// quickResult is what quickTokenBody made of a body.
type quickResult int

const (
	// quickNo: not a body of the usual kind, whatever follows; the general decoder decides.
	quickNo quickResult = iota
	// quickMore: it may still be one; read on.
	quickMore
	// quickDone: it is one, whole, and was decoded into dst.
	quickDone
)

// quickTokenBody decodes b, all of the body when final and a beginning of it otherwise, if it
// is {"context": string or null, "metadata": null or an object of strings, numbers, true,
// false and null}, each key at most once and either absent, with JSON white space anywhere
// between tokens and nothing else: no escapes and only printable ASCII in strings, keys spelt
// exactly. dst is written only for quickDone.
func quickTokenBody(b []byte, final bool, dst *tokenBody) quickResult {
	p := quickParser{b: b}
	var body tokenBody
	var hasContext, hasMetadata bool
	p.space()
	ok := p.byte('{')
	if ok {
		p.space()
		if p.peek() == '}' {
			p.i++
		} else {
			for ok {
				var key []byte
				key, ok = p.strBytes()
				ok = ok && p.colon()
				switch {
				case !ok:
				case string(key) == "context" && !hasContext:
					hasContext = true
					if p.peek() == 'n' {
						ok = p.literal("null")
					} else {
						var s string
						s, ok = p.str()
						body.Context = &s
					}
				case string(key) == "metadata" && !hasMetadata:
					hasMetadata = true
					if p.peek() == 'n' {
						ok = p.literal("null")
					} else {
						body.Metadata, ok = p.flatObject()
					}
				default:
					ok = false
				}
				if !ok {
					break
				}
				p.space()
				if p.peek() == '}' {
					p.i++
					break
				}
				ok = p.byte(',')
				p.space()
			}
		}
	}
	p.space()
	switch {
	case ok && p.i == len(b) && final:
		*dst = body
		return quickDone
	case (ok && p.i == len(b)) || (p.short && !final):
		return quickMore
	default:
		return quickNo
	}
}

// quickParser reads b from i. A read past the end fails and sets short: more input might
// have made it succeed.
type quickParser struct {
	b     []byte
	i     int
	short bool
}

// peek returns the next byte, 0 at the end.
func (p *quickParser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *quickParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// byte reads c.
func (p *quickParser) byte(c byte) bool {
	if p.i >= len(p.b) {
		p.short = true
		return false
	}
	if p.b[p.i] != c {
		return false
	}
	p.i++
	return true
}

// colon reads white space, a colon and white space.
func (p *quickParser) colon() bool {
	p.space()
	if !p.byte(':') {
		return false
	}
	p.space()
	return true
}

// literal reads lit.
func (p *quickParser) literal(lit string) bool {
	for j := 0; j < len(lit); j++ {
		if !p.byte(lit[j]) {
			return false
		}
	}
	return true
}

// str reads a string of printable ASCII without escapes.
func (p *quickParser) str() (string, bool) {
	s, ok := p.strBytes()
	return string(s), ok
}

// strBytes is str, returning the string's bytes in b.
func (p *quickParser) strBytes() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	for j := p.i; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			s := p.b[p.i:j]
			p.i = j + 1
			return s, true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, false
		}
	}
	p.short = true
	return nil, false
}

// flatObject reads an object whose values are strings, numbers, true, false or null.
func (p *quickParser) flatObject() (map[string]any, bool) {
	if !p.byte('{') {
		return nil, false
	}
	m := make(map[string]any, 4)
	p.space()
	if p.peek() == '}' {
		p.i++
		return m, true
	}
	for {
		key, ok := p.str()
		if !ok || !p.colon() {
			return nil, false
		}
		var v any
		switch c := p.peek(); {
		case c == '"':
			v, ok = p.str()
		case c == 't':
			v, ok = true, p.literal("true")
		case c == 'f':
			v, ok = false, p.literal("false")
		case c == 'n':
			v, ok = nil, p.literal("null")
		case c == '-' || '0' <= c && c <= '9':
			v, ok = p.number()
		case p.i == len(p.b):
			p.short = true
			ok = false
		default:
			ok = false
		}
		if !ok {
			return nil, false
		}
		m[key] = v
		p.space()
		if p.peek() == '}' {
			p.i++
			return m, true
		}
		if !p.byte(',') {
			return nil, false
		}
		p.space()
	}
}

// number reads a JSON number as encoding/json decodes one into an interface: a float64.
func (p *quickParser) number() (any, bool) {
	start := p.i
	if p.peek() == '-' {
		p.i++
	}
	switch c := p.peek(); {
	case c == '0':
		p.i++
	case '1' <= c && c <= '9':
		p.digits()
	default:
		p.short = p.i == len(p.b)
		return nil, false
	}
	if p.peek() == '.' {
		p.i++
		if !p.digits() {
			return nil, false
		}
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		p.i++
		if c := p.peek(); c == '+' || c == '-' {
			p.i++
		}
		if !p.digits() {
			return nil, false
		}
	}
	if p.i == len(p.b) {
		// More digits may follow.
		p.short = true
		return nil, false
	}
	f, err := strconv.ParseFloat(string(p.b[start:p.i]), 64)
	if err != nil {
		return nil, false
	}
	return f, true
}

// digits reads one or more digits.
func (p *quickParser) digits() bool {
	start := p.i
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		p.i++
	}
	if p.i == start {
		p.short = p.i == len(p.b)
		return false
	}
	return true
}
