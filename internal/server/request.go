package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// maxBody bounds a request body.
const maxBody = 64 << 10

// readBody reads the request body, refusing one over maxBody.
func readBody(c *gin.Context) ([]byte, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: codeBodyTooLarge,
				message: fmt.Sprintf("request body is over %d KiB", maxBody>>10)}
		}
		return nil, invalidRequest("reading request body: " + err.Error())
	}
	return body, nil
}

// decodeObject decodes a JSON object body whose fields are all named in fields. An empty body
// is an empty object; a field that is null counts as absent. It returns the raw value of each
// field present.
func decodeObject(body []byte, fields ...string) (map[string]json.RawMessage, *apiError) {
	out := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(body)) == 0 {
		return out, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&out); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, invalidRequest("request body must be a JSON object")
		}
		return nil, invalidRequest("request body is not valid JSON: " + err.Error())
	}
	if dec.More() {
		return nil, invalidRequest("request body has data after the JSON object")
	}
	for k, v := range out {
		if !contains(fields, k) {
			return nil, invalidRequest(fmt.Sprintf("unknown field %q (expected %s)", k, strings.Join(fields, ", ")))
		}
		if string(v) == "null" {
			delete(out, k)
		}
	}
	if out == nil {
		out = map[string]json.RawMessage{} // the body was `null`
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// stringField decodes an optional string field.
func stringField(raw map[string]json.RawMessage, name string) (string, *apiError) {
	v, ok := raw[name]
	if !ok {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", invalidRequest(fmt.Sprintf("%s must be a string", name))
	}
	return s, nil
}

// objectField decodes an optional object field; absent is an empty object.
func objectField(raw map[string]json.RawMessage, name string) (map[string]any, *apiError) {
	v, ok := raw[name]
	if !ok {
		return map[string]any{}, nil
	}
	var m map[string]any
	if v[0] != '{' || json.Unmarshal(v, &m) != nil {
		return nil, invalidRequest(fmt.Sprintf("%s must be a JSON object", name))
	}
	return m, nil
}
