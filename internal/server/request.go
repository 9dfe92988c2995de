package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/persona-router/persona-router/internal/expression"
)

// maxBody bounds a request body.
const maxBody = 64 << 10

// tokenBody is the body of POST /api/session-token; all of it is optional.
type tokenBody struct {
	Context  *string        `json:"context"`
	Metadata map[string]any `json:"metadata"`
}

// explainBody is the body of POST /admin/explain.
type explainBody struct {
	Context  *string        `json:"context"`
	Metadata map[string]any `json:"metadata"`
	User     map[string]any `json:"user"`
	// All lists the rules the context index skipped too.
	All bool `json:"all"`
}

// decodeBody decodes a JSON object body into dst (a pointer to one of the body structs) in one
// pass over the stream. An empty body is an empty object, null fields are absent, and unknown
// fields, wrong types, trailing data and bodies over maxBody are refused with a message that
// names what is wrong. A body that cannot be read (too slow, cut off) is refused with a fixed
// message: the read error's text names socket addresses.
func decodeBody(c *gin.Context, dst any, fields string) *apiError {
	return decodeFrom(http.MaxBytesReader(c.Writer, c.Request.Body, maxBody), dst, fields)
}

// decodeFrom is decodeBody on body, a request body already bounded to maxBody.
func decodeFrom(body io.Reader, dst any, fields string) *apiError {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	var syntaxErr *json.SyntaxError
	if err == nil {
		// Anything but white space after the object is an error, whatever it is; a body that
		// cannot be read to its end (too large, too slow, cut off) is refused for that.
		var rest json.RawMessage
		switch err = dec.Decode(&rest); {
		case err == io.EOF:
			return nil
		case err == nil, errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
			return invalidRequest("request body has data after the JSON object")
		default:
			return readFailure(err)
		}
	}
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == io.EOF:
		return nil // no body at all: the default route
	case errors.As(err, &typeErr):
		switch field := typeErr.Field; {
		case field == "":
			return invalidRequest("request body must be a JSON object")
		case field == "context":
			return invalidRequest("context must be a string")
		case typeErr.Type != nil && typeErr.Type.Kind() == reflect.Bool:
			return invalidRequest(fmt.Sprintf("%s must be true or false", field))
		case strings.Contains(field, "."):
			return invalidRequest(fmt.Sprintf("%s has a value of the wrong type", field))
		default:
			return invalidRequest(fmt.Sprintf("%s must be a JSON object", field))
		}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return invalidRequest(fmt.Sprintf("unknown field %s (expected %s)", strings.TrimPrefix(err.Error(), "json: unknown field "), fields))
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		return invalidRequest("request body is not valid JSON: " + strings.TrimPrefix(err.Error(), "json: "))
	default:
		return readFailure(err)
	}
}

// readFailure is the answer to a body whose reading failed with err.
func readFailure(err error) *apiError {
	var tooLarge *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooLarge):
		return &apiError{code: codeBodyTooLarge,
			message: fmt.Sprintf("request body is over %d KiB", maxBody>>10)}
	case errors.As(err, &netErr) && netErr.Timeout():
		// The client sent the body too slowly for the server's read timeout. The error's own
		// text names the socket addresses, which are nobody's business.
		return &apiError{code: codeRequestTimeout, message: "reading the request body timed out"}
	default:
		// Any other read error: the connection failed under the body. Its text names socket
		// addresses too.
		return invalidRequest("the request body could not be read")
	}
}

// input turns decoded fields into the decision's input; absent parts are empty.
func input(context *string, metadata, user map[string]any) expression.Input {
	in := expression.Input{Metadata: metadata, User: user}
	if context != nil {
		in.Context = *context
	}
	if in.Metadata == nil {
		in.Metadata = map[string]any{}
	}
	if in.User == nil {
		in.User = map[string]any{}
	}
	return in
}
