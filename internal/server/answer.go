package server

import (
	"net/http"
	"sync"

	"github.com/gin-gonic/gin"

	"github.com/persona-router/persona-router/internal/jsonenc"
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
	b = jsonenc.AppendString(b, a.SessionToken)
	b = append(b, `,"persona":`...)
	b = jsonenc.AppendString(b, a.Persona)
	b = append(b, `,"rule":`...)
	if a.Rule == nil {
		b = append(b, "null"...)
	} else {
		b = jsonenc.AppendString(b, *a.Rule)
	}
	b = append(b, `,"configVersion":`...)
	b = jsonenc.AppendString(b, a.ConfigVersion)
	return append(b, '}')
}
