package server

import (
	"net/http"
	"sync"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
)

// writeToken answers a token request with a, encoded as encoding/json encodes tokenResponse
// (TestTokenAnswerEncodesAsEncodingJSON holds the two together), straight into a pooled
// buffer: the answer every successful request sends costs no reflection.
func writeToken(c *gin.Context, a tokenResponse) {
	bp := answerBuffers.Get().(*[]byte)
	b := appendTokenResponse((*bp)[:0], a)
	c.Writer.Header()["Content-Type"] = jsonContentType
	c.Status(http.StatusOK)
	_, _ = c.Writer.Write(b)
	if cap(b) <= 16<<10 {
		*bp = b
		answerBuffers.Put(bp)
	}
}

var (
	jsonContentType = []string{"application/json; charset=utf-8"}
	answerBuffers   = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}
)

func appendTokenResponse(b []byte, a tokenResponse) []byte {
	b = append(b, `{"sessionToken":`...)
	b = appendJSONString(b, a.SessionToken)
	b = append(b, `,"persona":`...)
	b = appendJSONString(b, a.Persona)
	b = append(b, `,"rule":`...)
	if a.Rule == nil {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, *a.Rule)
	}
	b = append(b, `,"configVersion":`...)
	b = appendJSONString(b, a.ConfigVersion)
	return append(b, '}')
}

const hex = "0123456789abcdef"

// appendJSONString appends s as encoding/json writes a string: HTML-safe (<, > and & escaped),
// with invalid UTF-8 replaced by U+FFFD and U+2028, U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
