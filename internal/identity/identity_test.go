package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

var secret = []byte("0123456789abcdef0123456789abcdef-test-secret")

// keys are the test's asymmetric keys, by kid.
type keys struct {
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
	ed  ed25519.PrivateKey
}

// keySets are two distinct sets of keys, generated once for the whole package: an RSA key
// takes a good part of a second to generate under the race detector.
var keySets = sync.OnceValues(func() ([2]keys, error) {
	var sets [2]keys
	for i := range sets {
		r, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return sets, err
		}
		e, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return sets, err
		}
		_, d, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return sets, err
		}
		sets[i] = keys{rsa: r, ec: e, ed: d}
	}
	return sets, nil
})

// newKeys returns the package's keys.
func newKeys(t *testing.T) keys {
	t.Helper()
	sets, err := keySets()
	if err != nil {
		t.Fatal(err)
	}
	return sets[0]
}

// otherKeys returns keys that differ from newKeys' in every algorithm.
func otherKeys(t *testing.T) keys {
	t.Helper()
	sets, err := keySets()
	if err != nil {
		t.Fatal(err)
	}
	return sets[1]
}

// jwksServer serves a JWKS over real HTTP and counts fetches. Its keys can change.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	set     json.RawMessage
	fetches atomic.Int32
}

func newJWKS(t *testing.T, pubs map[string]any) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.publish(t, pubs)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.set)
	}))
	t.Cleanup(s.Close)
	return s
}

// publish replaces the served keys.
func (s *jwksServer) publish(t *testing.T, pubs map[string]any) {
	t.Helper()
	ctx := context.Background()
	store := jwkset.NewMemoryStorage()
	for kid, pub := range pubs {
		jwk, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.KeyWrite(ctx, jwk); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := store.JSONPublic(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.set = raw
	s.mu.Unlock()
}

func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(extra ...any) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub": "user-42", "iss": "https://idp.example", "aud": "persona-router",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
		"name": "Dana", "tier": "enterprise",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == nil {
			delete(c, extra[i].(string))
		} else {
			c[extra[i].(string)] = extra[i+1]
		}
	}
	return c
}

// manyClaims is claims() with n more claims of size bytes each: within the per-claim bounds,
// so that only the size of the whole token can refuse it.
func manyClaims(n, size int) jwt.MapClaims {
	c := claims()
	for i := range n {
		c[fmt.Sprintf("c%d", i)] = strings.Repeat("x", size)
	}
	return c
}

func request(auth string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/api/session-token", nil)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	return r
}

func newVerifier(t *testing.T, opts JWTOptions) *JWT {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if opts.Issuer == "" {
		opts.Issuer = "https://idp.example"
	}
	if opts.Audience == "" {
		opts.Audience = "persona-router"
	}
	j, err := NewJWT(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestJWTAcceptsValidTokens(t *testing.T) {
	k := newKeys(t)
	jwks := newJWKS(t, map[string]any{"rsa-1": &k.rsa.PublicKey, "ec-1": &k.ec.PublicKey, "ed-1": k.ed.Public()})
	v := newVerifier(t, JWTOptions{Secret: secret, JWKSURL: jwks.URL})
	for name, token := range map[string]string{
		"HS256":             sign(t, jwt.SigningMethodHS256, secret, "", claims()),
		"HS512":             sign(t, jwt.SigningMethodHS512, secret, "", claims()),
		"RS256":             sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", claims()),
		"ES256":             sign(t, jwt.SigningMethodES256, k.ec, "ec-1", claims()),
		"EdDSA":             sign(t, jwt.SigningMethodEdDSA, k.ed, "ed-1", claims()),
		"RS256 no kid":      sign(t, jwt.SigningMethodRS256, k.rsa, "", claims()),
		"exp within leeway": sign(t, jwt.SigningMethodHS256, secret, "", claims("exp", time.Now().Add(-10*time.Second).Unix())),
		"aud list":          sign(t, jwt.SigningMethodHS256, secret, "", claims("aud", []string{"other", "persona-router"})),
	} {
		t.Run(name, func(t *testing.T) {
			user, fail := v.Identify(request("Bearer " + token))
			if fail != nil {
				t.Fatalf("refused: %v", fail)
			}
			if user["id"] != "user-42" || user["sub"] != "user-42" || user["name"] != "Dana" || user["tier"] != "enterprise" {
				t.Errorf("user = %v, want id = sub and the other claims as they are", user)
			}
		})
	}
}

func TestJWTRefusals(t *testing.T) {
	k := newKeys(t)
	other := otherKeys(t)
	jwks := newJWKS(t, map[string]any{"rsa-1": &k.rsa.PublicKey, "ec-1": &k.ec.PublicKey})
	v := newVerifier(t, JWTOptions{Secret: secret, JWKSURL: jwks.URL})

	// The classic confusion attack: an HMAC token whose "secret" is the RSA public key.
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&k.rsa.PublicKey))})
	unsignedNone := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", claims())
	valid := sign(t, jwt.SigningMethodHS256, secret, "", claims())
	tampered := valid[:len(valid)-4] + "AAAA"

	for _, tc := range []struct {
		name, auth, reason string
	}{
		{"no header", "", "missing"},
		{"not bearer", "Basic dXNlcjpwYXNz", "malformed"},
		{"not a JWT", "Bearer not-a-jwt", "malformed"},
		{"alg none", "Bearer " + unsignedNone, "algorithm"},
		{"unknown alg", "Bearer eyJhbGciOiJYWVoiLCJ0eXAiOiJKV1QifQ." + valid[strings.Index(valid, ".")+1:], "algorithm"},
		{"HS256 with the RSA public key as secret", "Bearer " + sign(t, jwt.SigningMethodHS256, pubPEM, "rsa-1", claims()), "bad_signature"},
		{"RS256 token naming the EC key", "Bearer " + sign(t, jwt.SigningMethodRS256, k.rsa, "ec-1", claims()), "bad_signature"},
		{"bad HMAC signature", "Bearer " + tampered, "bad_signature"},
		{"signed by another RSA key", "Bearer " + sign(t, jwt.SigningMethodRS256, other.rsa, "rsa-1", claims()), "bad_signature"},
		{"expired", "Bearer " + sign(t, jwt.SigningMethodHS256, secret, "", claims("exp", time.Now().Add(-2*time.Minute).Unix())), "expired"},
		{"not yet valid", "Bearer " + sign(t, jwt.SigningMethodHS256, secret, "", claims("nbf", time.Now().Add(2*time.Minute).Unix())), "not_yet_valid"},
		{"no exp", "Bearer " + sign(t, jwt.SigningMethodHS256, secret, "", claims("exp", nil)), "invalid"},
		{"wrong issuer", "Bearer " + sign(t, jwt.SigningMethodHS256, secret, "", claims("iss", "https://evil.example")), "wrong_issuer"},
		{"wrong audience", "Bearer " + sign(t, jwt.SigningMethodHS256, secret, "", claims("aud", "someone-else")), "wrong_audience"},
		{"unknown kid", "Bearer " + sign(t, jwt.SigningMethodRS256, other.rsa, "rsa-unknown", claims()), "unknown_key"},
		{"no subject", "Bearer " + sign(t, jwt.SigningMethodHS256, secret, "", claims("sub", nil)), "no_subject"},
		// Expressions read the claims as user: their cost estimate relies on these bounds.
		{"token over 16 KiB, each claim within bounds", "Bearer " + sign(t, jwt.SigningMethodHS256, secret, "", manyClaims(20, 1000)), "too_large"},
		{"claim string over 1 KiB", "Bearer " + sign(t, jwt.SigningMethodHS256, secret, "", claims("name", strings.Repeat("n", 1025))), "too_large"},
		{"claim list over 64 items", "Bearer " + sign(t, jwt.SigningMethodHS256, secret, "", claims("groups", make([]string, 65))), "too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, fail := v.Identify(request(tc.auth))
			if fail == nil {
				t.Fatalf("accepted as %v", user)
			}
			if fail.Reason != tc.reason {
				t.Errorf("reason %q (%s), want %q", fail.Reason, fail.Message, tc.reason)
			}
			if fail.Challenge == "" || fail.Challenge[:6] != "Bearer" {
				t.Errorf("challenge %q", fail.Challenge)
			}
		})
	}
}

func TestJWTMissingClaimsAreNamed(t *testing.T) {
	v := newVerifier(t, JWTOptions{Secret: secret})
	for _, tc := range []struct {
		name    string
		claims  jwt.MapClaims
		reason  string
		message string
	}{
		{"no iss", claims("iss", nil), "wrong_issuer", `the token has no iss claim (expected "https://idp.example")`},
		{"empty iss", claims("iss", ""), "wrong_issuer", `the token has no iss claim (expected "https://idp.example")`},
		{"no aud", claims("aud", nil), "wrong_audience", `the token has no aud claim (expected "persona-router")`},
		{"empty aud list", claims("aud", []string{}), "wrong_audience", `the token has no aud claim (expected "persona-router")`},
		{"no exp", claims("exp", nil), "invalid", "the token has no exp claim"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, fail := v.Identify(request("Bearer " + sign(t, jwt.SigningMethodHS256, secret, "", tc.claims)))
			if fail == nil {
				t.Fatalf("accepted as %v", user)
			}
			if fail.Reason != tc.reason || fail.Message != tc.message {
				t.Errorf("refused as %q %q, want %q %q", fail.Reason, fail.Message, tc.reason, tc.message)
			}
			if !strings.Contains(fail.Challenge, `error_description="the token has no `) {
				t.Errorf("challenge %q does not say what is missing", fail.Challenge)
			}
		})
	}

	// Without a configured issuer and audience, tokens need neither claim.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	open, err := NewJWT(ctx, JWTOptions{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	if _, fail := open.Identify(request("Bearer " + sign(t, jwt.SigningMethodHS256, secret, "", claims("iss", nil, "aud", nil)))); fail != nil {
		t.Errorf("no iss and aud, none required: %v", fail)
	}
}

func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	v := newVerifier(t, JWTOptions{Secret: secret})
	token := sign(t, jwt.SigningMethodHS256, secret, "", claims())
	for _, auth := range []string{"Bearer " + token, "bearer " + token, "BEARER " + token, "bEaReR " + token, "Bearer   " + token} {
		if user, fail := v.Identify(request(auth)); fail != nil || user["id"] != "user-42" {
			t.Errorf("%.10s…: %v, want accepted", auth, fail)
		}
	}
	for _, auth := range []string{"Bearer", "Bearer ", "bearer    ", "Bearertoken", "Basic " + token, "Bearer\t" + token} {
		if _, fail := v.Identify(request(auth)); fail == nil || fail.Reason != "malformed" {
			t.Errorf("%q: %v, want refused as malformed", auth, fail)
		}
	}
}

func TestJWTFamiliesAreSeparate(t *testing.T) {
	k := newKeys(t)
	jwks := newJWKS(t, map[string]any{"rsa-1": &k.rsa.PublicKey})
	onlyJWKS := newVerifier(t, JWTOptions{JWKSURL: jwks.URL})
	if _, fail := onlyJWKS.Identify(request("Bearer " + sign(t, jwt.SigningMethodHS256, secret, "", claims()))); fail == nil || fail.Reason != "algorithm" {
		t.Errorf("HS256 without a secret: %v, want refused for its algorithm", fail)
	}
	onlySecret := newVerifier(t, JWTOptions{Secret: secret})
	if _, fail := onlySecret.Identify(request("Bearer " + sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", claims()))); fail == nil || fail.Reason != "algorithm" {
		t.Errorf("RS256 without a JWKS: %v, want refused for its algorithm", fail)
	}
}

func TestJWKSRotationAndUnknownKeyRefreshes(t *testing.T) {
	k := newKeys(t)
	rotated := otherKeys(t)
	jwks := newJWKS(t, map[string]any{"old": &k.rsa.PublicKey})
	v := newVerifier(t, JWTOptions{JWKSURL: jwks.URL, RefreshLimit: rate.Every(time.Hour)})
	if _, fail := v.Identify(request("Bearer " + sign(t, jwt.SigningMethodRS256, k.rsa, "old", claims()))); fail != nil {
		t.Fatal(fail)
	}
	start := jwks.fetches.Load()

	// The identity provider rotates its key: the first token with the new kid refreshes.
	jwks.publish(t, map[string]any{"old": &k.rsa.PublicKey, "new": &rotated.rsa.PublicKey})
	if _, fail := v.Identify(request("Bearer " + sign(t, jwt.SigningMethodRS256, rotated.rsa, "new", claims()))); fail != nil {
		t.Fatalf("a token signed with the rotated key: %v", fail)
	}
	if n := jwks.fetches.Load() - start; n != 1 {
		t.Errorf("%d JWKS fetches for the new kid, want 1", n)
	}

	// Unknown kids cannot make the service hammer the JWKS: refreshes are rate-limited (here
	// one an hour, already spent), and a request waits about a second at most.
	for i := range 5 {
		began := time.Now()
		_, fail := v.Identify(request("Bearer " + sign(t, jwt.SigningMethodRS256, rotated.rsa, "attacker-"+string(rune('a'+i)), claims())))
		if fail == nil || fail.Reason != "unknown_key" {
			t.Fatalf("unknown kid: %v", fail)
		}
		if waited := time.Since(began); waited > 3*time.Second {
			t.Errorf("a request with an unknown kid waited %s for a refresh", waited)
		}
	}
	if n := jwks.fetches.Load() - start; n != 1 {
		t.Errorf("%d JWKS fetches after 5 unknown kids, want still 1", n)
	}
}

func TestHeaderIdentity(t *testing.T) {
	h := Header{UserHeader: "X-Forwarded-User", EmailHeader: "X-Forwarded-Email"}
	r := request("")
	r.Header.Set("X-Forwarded-User", "dana")
	r.Header.Set("X-Forwarded-Email", "dana@example.com")
	user, fail := h.Identify(r)
	if fail != nil || user["id"] != "dana" || user["email"] != "dana@example.com" {
		t.Errorf("user %v, %v", user, fail)
	}
	r = request("")
	r.Header.Set("X-Forwarded-User", "dana")
	if user, _ := h.Identify(r); len(user) != 1 {
		t.Errorf("without an email header: %v", user)
	}
	if _, fail := h.Identify(request("")); fail == nil || fail.Reason != "missing" || fail.Challenge == "" {
		t.Errorf("no header: %v", fail)
	}
	r = request("")
	r.Header.Set("X-Forwarded-User", "dana\x00admin")
	if _, fail := h.Identify(r); fail == nil || fail.Reason != "malformed" {
		t.Errorf("control character: %v", fail)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
