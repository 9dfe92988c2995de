package anam

import (
	"net/http"
	"time"
)

// responseHeaderTimeout bounds the wait for Anam's answer when the call's own deadline is
// longer.
const responseHeaderTimeout = 30 * time.Second

// NewHTTPClient returns the HTTP client that reaches Anam in production: connections are
// pooled and kept alive for the token endpoint's bursts, and every phase is bounded. A call as
// a whole is bounded by callTimeout (the Client's timeout, --anam-timeout); when that ends the
// wait first, the transport sets no response-header timer of its own, one timer per request
// fewer.
func NewHTTPClient(callTimeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 128
	if callTimeout <= 0 || callTimeout > responseHeaderTimeout {
		t.ResponseHeaderTimeout = responseHeaderTimeout
	}
	return &http.Client{Transport: t}
}
