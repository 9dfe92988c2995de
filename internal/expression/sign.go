package expression

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
)

// Signed webhook URLs. A persona's webhook tools are called by Anam's servers, not by the
// user's browser, so the URL itself is the credential: sign(url) appends the signed-in user's
// id, an expiry and an HMAC, in the scheme of Anam's cookbook recipe "ephemeral webhook tools"
// (presignUrl/verifyPresignedUrl), so that a webhook written from the recipe verifies our URLs
// unchanged:
//
//	<url>?uid=<user id, escaped>&exp=<Unix seconds>&sig=<hex HMAC-SHA256 of "<url>|<user id>|<exp>">
//
// (& instead of ? when url has a query already). <url> in the payload is the argument exactly
// as given and the user id is not escaped there. Every URL signed for one request expires at
// the same time: the request's time plus the lifetime.
//
// sign needs per-request state (the secret, the user, the request's time) that functions
// registered with expr never see, so it works like the guards of guard.go: the patcher rewrites
// each sign(url, ttl) into sign.(signer., meter., url, ttl), where signer. is a variable of the
// environment, pointing at the Evaluator's signer, whose name no expression can spell.

// MinSigningSecret is the shortest signing secret accepted, in bytes: 256 bits, the size of
// HMAC-SHA256's output.
const MinSigningSecret = 32

// Lifetimes of signed URLs, in seconds.
const (
	// defaultTTL is the lifetime of sign(url): one hour, as long as Anam's session tokens.
	defaultTTL = 3600
	// maxTTL bounds sign(url, ttl): seven days.
	maxTTL = 7 * 24 * 3600
)

// noSecret is why an expression calling sign() does not compile on a Compiler without a secret.
const noSecret = "sign() needs a signing secret: set TOOL_SIGNING_SECRET (at least 32 bytes) in the service's environment"

// ErrAnonymous is the cause of an evaluation that called sign() for a request without a
// signed-in user: no URL is ever signed for an empty or made-up user id.
var ErrAnonymous = errors.New("sign() needs a signed-in user (user.id)")

// CheckSigningSecret reports whether s, the value of TOOL_SIGNING_SECRET, is long enough to
// sign with. Its error never quotes s.
func CheckSigningSecret(s string) error {
	if len(s) < MinSigningSecret {
		return fmt.Errorf("TOOL_SIGNING_SECRET must be at least %d bytes long (e.g. the output of `openssl rand -hex 32`)", MinSigningSecret)
	}
	return nil
}

// Option configures a Compiler.
type Option func(*Compiler)

// WithSigningSecret makes sign() available to the Compiler's expressions, signing with secret:
// its bytes as they are, with no hex or base64 decoding, so a webhook keys its HMAC with the
// same string. A secret shorter than MinSigningSecret counts as none, so an expression calling
// sign() fails to compile (check the secret with CheckSigningSecret first). The secret is
// copied; it is kept only inside a function value, which fmt, log/slog and encoding/json cannot
// print, and no error, String or log line ever quotes it.
func WithSigningSecret(secret []byte) Option {
	if len(secret) < MinSigningSecret {
		return func(c *Compiler) { c.mac = nil }
	}
	key := bytes.Clone(secret)
	return func(c *Compiler) {
		c.mac = func() hash.Hash { return hmac.New(sha256.New, key) }
	}
}

// signer is what sign() needs of one request. Acquire sets it; it lasts until the Evaluator is
// released, across the evaluations of that request, so that every URL shares one expiry.
type signer struct {
	// mac returns a fresh HMAC keyed with the secret; nil without one.
	mac func() hash.Hash
	// user is the request's claims, read at the first sign() call only.
	user map[string]any
	// now is the request's time: Input.Now, or the time of the first sign() call.
	now time.Time
}

const signerVar = "signer."

// The sizes sign() builds beyond its URL and user id, in bytes.
const (
	// signOverhead bounds what a signed URL adds to its URL and escaped user id:
	// "?uid=", "&exp=" and 20 digits, "&sig=" and 64 hex digits.
	signOverhead = 5 + 5 + 20 + 5 + 2*sha256.Size
	// payloadOverhead bounds what the payload adds to the URL and user id: two "|" and the
	// expiry's digits.
	payloadOverhead = 2 + 20
	// macBytes is what one HMAC-SHA256 allocates (measured: 512 bytes in 6 allocations).
	macBytes = 512
	// blockSteps is the steps one 64-byte block of SHA-256 costs: 8 steps, about 160 ns,
	// covers a machine without SHA instructions (about 40 ns with them).
	blockSteps = 8
)

// signCost is what signing a URL of urlBytes for a user id of idBytes costs at most: the HMAC's
// steps and the bytes built (the escaped id, the payload, the signed URL and the HMAC's state).
// The estimate charges it for the longest URL and id; the meter for the real ones.
func signCost(urlBytes, idBytes int64) (steps, mem int64) {
	escaped := mul(3, idBytes)
	payload := add(add(urlBytes, idBytes), payloadOverhead)
	out := add(add(urlBytes, escaped), signOverhead)
	// Two blocks of the key, the payload and its padding, two blocks for the outer hash.
	blocks := add(4, (payload+9+63)/64)
	return add(mul(blocks, blockSteps), work(out)), add(add(escaped, payload), add(out, macBytes))
}

// sign signs rawURL for the request's user, expiring ttl seconds (one argument, or none for an
// hour) after the request's time.
func (s *signer) sign(m *meter, rawURL any, ttl ...any) (string, error) {
	u, ok := rawURL.(string)
	if !ok {
		return "", fmt.Errorf("sign: the URL must be a string, got %s", typeName(rawURL))
	}
	if strings.Contains(u, "#") {
		// A query appended after a fragment would never reach the webhook.
		return "", errors.New("sign: the URL must not have a fragment (#…)")
	}
	seconds := int64(defaultTTL)
	if len(ttl) > 0 {
		var err error
		if seconds, err = lifetime(ttl[0]); err != nil {
			return "", err
		}
	}
	if s.mac == nil {
		return "", errors.New(noSecret)
	}
	id, err := userID(s.user)
	if err != nil {
		return "", err
	}
	steps, mem := signCost(int64(len(u)), int64(len(id)))
	if err := m.alloc(mem); err != nil {
		return "", err
	}
	if err := m.step(steps); err != nil {
		return "", err
	}
	if s.now.IsZero() {
		s.now = clock()
	}
	exp := strconv.FormatInt(s.now.Unix()+seconds, 10)
	mac := s.mac()
	mac.Write([]byte(u + "|" + id + "|" + exp))
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	// encodeURIComponent's escaping (a space is %20, not +), which every query parser decodes
	// back to the id, URLSearchParams and decodeURIComponent alike.
	uid := strings.ReplaceAll(url.QueryEscape(id), "+", "%20")
	return u + sep + "uid=" + uid + "&exp=" + exp + "&sig=" + hex.EncodeToString(mac.Sum(nil)), nil
}

// clock is the time of a request that came without one; tests replace it.
var clock = time.Now

// userID is the request's user id: a string that is not empty.
func userID(user map[string]any) (string, error) {
	v, ok := user["id"]
	if !ok || v == nil {
		return "", fmt.Errorf("%w: the request has no user", ErrAnonymous)
	}
	id, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%w: user.id is %s, not a string", ErrAnonymous, typeName(v))
	}
	if id == "" {
		return "", fmt.Errorf("%w: user.id is empty", ErrAnonymous)
	}
	return id, nil
}

// lifetime is sign()'s ttl argument in seconds, a whole number from 1 to maxTTL. A JSON number
// (a float64 from metadata) is accepted when it is whole.
func lifetime(ttl any) (int64, error) {
	var n float64
	switch v := ttl.(type) {
	case int:
		n = float64(v)
	case float64:
		n = v
	default:
		return 0, fmt.Errorf("sign: the lifetime must be a whole number of seconds from 1 to %d (7 days), got %s", maxTTL, typeName(ttl))
	}
	if n != math.Trunc(n) || n < 1 || n > maxTTL {
		return 0, fmt.Errorf("sign: the lifetime must be a whole number of seconds from 1 to %d (7 days), got %s", maxTTL, strconv.FormatFloat(n, 'f', -1, 64))
	}
	return int64(n), nil
}

// typeName names the type of a value for a message, without quoting the value.
func typeName(v any) string {
	if v == nil {
		return "nil"
	}
	return fmt.Sprintf("a %T", v)
}

// signCalls checks the calls of sign in a parsed tree: they need a signing secret.
func signCalls(tree ast.Node, hasSecret bool) *file.Error {
	if hasSecret {
		return nil
	}
	var found ast.Node
	ast.Walk(&tree, visitFunc(func(n *ast.Node) {
		if found == nil && isCallOf(*n, "sign") {
			found = *n
		}
	}))
	if found == nil {
		return nil
	}
	return &file.Error{Location: found.Location(), Message: noSecret}
}

// signLifetimes checks the constant lifetimes of the sign calls of an optimized tree, in which
// the optimizer has folded constant arithmetic (7 * 24 * 3600) into a number.
func signLifetimes(root ast.Node) *file.Error {
	var err *file.Error
	ast.Walk(&root, visitFunc(func(n *ast.Node) {
		c, ok := (*n).(*ast.CallNode)
		if err != nil || !ok || !isCallOf(c, fnSign) || len(c.Arguments) != 4 {
			return
		}
		if ttl, ok := constInt(c.Arguments[3]); ok && (ttl < 1 || ttl > maxTTL) {
			err = &file.Error{Location: c.Arguments[3].Location(), Message: fmt.Sprintf(
				"sign()'s lifetime must be from 1 to %d seconds (7 days), got %d", maxTTL, ttl)}
		}
	}))
	return err
}

// isCallOf reports whether n calls the function named name.
func isCallOf(n ast.Node, name string) bool {
	c, ok := n.(*ast.CallNode)
	if !ok {
		return false
	}
	id, ok := c.Callee.(*ast.IdentifierNode)
	return ok && id.Value == name
}
