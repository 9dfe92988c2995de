package anam

import (
	"net/http"
	"time"
)

// NewHTTPClient returns the HTTP client that reaches Anam in production: connections are
// pooled and kept alive for the token endpoint's bursts, and every phase is bounded (a call as
// a whole is bounded by the Client's timeout, --anam-timeout).
func NewHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 128
	t.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{Transport: t}
}
