package server

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
)

// chunkedBody yields data n bytes per read (at least one), then end, the error fail.
type chunkedBody struct {
	data []byte
	n    int
	fail error
}

func (r *chunkedBody) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.fail
	}
	k := min(len(p), r.n, len(r.data))
	copy(p, r.data[:k])
	r.data = r.data[k:]
	return k, nil
}

// FuzzTokenBodyDecodesAsDecodeBody holds the token body's quick path to decodeBody's
// decoder: for every body, however it arrives and whether its reading fails, the same
// answer — the same error code and message, or the same decoded fields.
func FuzzTokenBodyDecodesAsDecodeBody(f *testing.F) {
	for _, seed := range []string{
		``, ` `, `{}`, ` { } `, `null`, `[]`, `"s"`, `{"context": "sales"}`, `{"context": null, "metadata": null}`,
		`{"context": "sales", "metadata": {"region": "US", "product": "Atlas"}}`,
		`{"metadata": {"tier": "pro", "seats": 4, "trial": false, "paid": true, "note": null}}`,
		`{"metadata": {"n": -0.5e-3, "m": 1E+2, "z": 0, "big": 1e400, "x": 01}}`, `{"metadata": {"n": -}}`,
		`{"metadata": {"n": 1.}}`, `{"metadata": {"n": 1e}}`, `{"metadata": {"a": {"b": 1}}}`, `{"metadata": {"a": [1]}}`,
		`{"metadata": {"a": 1, "a": 2}}`, `{"metadata": {}}`, `{"metadata": {"": "empty key"}}`,
		`{"context": "a", "context": "b"}`, `{"metadata": {}, "metadata": {"a": 1}}`, `{"metadata": {"a": 1}, "metadata": {"b": 2}}`, `{"Context": "x"}`, `{"CONTEXT": "x"}`,
		`{"contxt": 1}`, `{"context": 1}`, `{"context": "\u00e9"}`, `{"context": "é"}`, "{\"context\": \"\xff\"}",
		`{"context": "a\tb"}`, "{\"context\": \"a\tb\"}", `{"context": "x",}`, `{"context": "x"} x`, `{"context": "x"} {}`,
		`{"context": "x"}   `, `{"metadata": "x"}`, `{"metadata": tru}`, `{"metadata": {"a": nul}}`, `{"a"`, `{`, "\ufeff{}",
		`{"context": "x"` + strings.Repeat(" ", 5000) + `}`, `{"metadata": {"k": "` + strings.Repeat("v", maxBody) + `"}}`,
	} {
		f.Add([]byte(seed), uint8(0), false)
		f.Add([]byte(seed), uint8(1), true)
		f.Add([]byte(seed), uint8(7), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, fail bool) {
		end := io.EOF
		if fail {
			end = os.ErrDeadlineExceeded
		}
		body := func() io.Reader {
			in := &chunkedBody{data: data, n: max(int(chunk), 1), fail: end}
			if chunk == 0 {
				in.n = len(data) + 1
			}
			return http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(in), maxBody)
		}
		var got, want tokenBody
		gotErr := readTokenBody(body(), &got)
		wantErr := decodeFrom(body(), &want, tokenBodyFields)
		switch {
		case (gotErr == nil) != (wantErr == nil):
			t.Fatalf("%q: quick path %v, decoder %v", data, gotErr, wantErr)
		case gotErr != nil && (gotErr.code != wantErr.code || gotErr.message != wantErr.message):
			t.Fatalf("%q: quick path %v, decoder %v", data, gotErr, wantErr)
		case gotErr == nil && !reflect.DeepEqual(got, want):
			t.Fatalf("%q: quick path decoded %#v, decoder %#v", data, got, want)
		}
	})
}

// TestUsualTokenBodiesTakeTheQuickPath: the bodies clients send are decoded without the
// general decoder (FuzzTokenBodyDecodesAsDecodeBody checks that the result is the same).
func TestUsualTokenBodiesTakeTheQuickPath(t *testing.T) {
	for _, body := range []string{
		`{}`, `{"context": "sales"}`, `{"context": "sales", "metadata": {"region": "US", "product": "Atlas"}}`,
		"{\n  \"metadata\": {\"tier\": \"pro\", \"seats\": 12, \"trial\": false, \"ref\": null},\n  \"context\": null\n}\n",
	} {
		var dst tokenBody
		if got := quickTokenBody([]byte(body), true, &dst); got != quickDone {
			t.Errorf("%s: %v, want quickDone", body, got)
		}
		if got := quickTokenBody([]byte(body[:len(body)-1]), false, &dst); got != quickMore {
			t.Errorf("%s cut short: %v, want quickMore", body, got)
		}
	}
	for _, body := range []string{`{"context": "caf\u00e9"}`, `{"metadata": {"a": {}}}`, `[`, `{"context": "x"} y`} {
		var dst tokenBody
		if got := quickTokenBody([]byte(body), false, &dst); got != quickNo {
			t.Errorf("%s: %v, want quickNo", body, got)
		}
	}
}

// onceBody yields data in one read; any further read is counted and fails.
type onceBody struct {
	data  []byte
	reads int
}

func (r *onceBody) Read(p []byte) (int, error) {
	r.reads++
	if r.reads > 1 {
		return 0, errors.New("read past a body that cannot be accepted")
	}
	return copy(p, r.data), nil
}

// A body that has already gone wrong is answered without waiting for more of it: a NUL where
// a value should be is not taken for the end of what was read.
func TestQuickPathStopsAtWhatCannotBeABody(t *testing.T) {
	for _, prefix := range []string{"{\"metadata\":{\"a\":\x00", "{\"context\":\x00", "\x00", "{\"metadata\":{\"a\":1\x00"} {
		var dst tokenBody
		if got := quickTokenBody([]byte(prefix), false, &dst); got != quickNo {
			t.Errorf("quickTokenBody(%q) = %v, want quickNo", prefix, got)
		}
		body := &onceBody{data: []byte(prefix)}
		err := readTokenBody(http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(body), maxBody), &dst)
		if err == nil || err.code != codeInvalidRequest || !strings.Contains(err.message, "not valid JSON") {
			t.Errorf("%q: %v, want invalid_request, not valid JSON", prefix, err)
		}
		if body.reads != 1 {
			t.Errorf("%q: read %d times, want once", prefix, body.reads)
		}
	}
}

// A body whose reading fails after its object is answered for the failure (too large, too
// slow, cut off), not as data after the object; data after the object is still refused.
func TestReadFailureAfterTheObject(t *testing.T) {
	const obj = `{"context": "sales"}`
	for _, tc := range []struct {
		name string
		body func() io.Reader
		code errorCode
		msg  string
	}{
		{"over maxBody in white space", func() io.Reader { return strings.NewReader(obj + strings.Repeat(" ", maxBody)) },
			codeBodyTooLarge, "over 64 KiB"},
		{"read timeout after the object", func() io.Reader {
			return &chunkedBody{data: []byte(obj), n: 1 << 20, fail: os.ErrDeadlineExceeded}
		}, codeRequestTimeout, "timed out"},
		{"connection reset after the object", func() io.Reader {
			return &chunkedBody{data: []byte(obj + "  "), n: 1 << 20, fail: errors.New("connection reset by peer")}
		}, codeInvalidRequest, "could not be read"},
		{"a value after the object", func() io.Reader { return strings.NewReader(obj + " 1") }, codeInvalidRequest, "data after the JSON object"},
		{"garbage after the object", func() io.Reader { return strings.NewReader(obj + " x") }, codeInvalidRequest, "data after the JSON object"},
		{"half an object after the object", func() io.Reader { return strings.NewReader(obj + ` {"a"`) }, codeInvalidRequest, "data after the JSON object"},
	} {
		for path, read := range map[string]func(io.Reader) *apiError{
			"decoder":    func(r io.Reader) *apiError { return decodeFrom(r, new(tokenBody), tokenBodyFields) },
			"quick path": func(r io.Reader) *apiError { return readTokenBody(r, new(tokenBody)) },
		} {
			err := read(http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(tc.body()), maxBody))
			if err == nil || err.code != tc.code || !strings.Contains(err.message, tc.msg) {
				t.Errorf("%s, %s: %v, want code %d with %q", tc.name, path, err, tc.code, tc.msg)
			}
		}
	}
}
