package main

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

const jwtSecret = "0123456789abcdef0123456789abcdef-e2e"

func hs256(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(jwtSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// securityConfig routes by the user's claims and declares a metadata schema.
func securityConfig(t *testing.T) []string {
	return writeConfig(t, map[string]string{
		"personas/default.yaml": defaultPersona,
		"personas/vip.yaml": `extends: default
name: "VIP desk for {{ user.name }} ({{ user.email ?? user.id }})"
`,
		"rules/a.yaml": `metadata:
  tier: {type: string, enum: [free, pro, enterprise]}
  seats: {type: integer, min: 1, max: 100000}
  avatar: {type: string}
rules:
  - {name: vip, when: 'user.plan == "vip" || user.id == "boss"', persona: vip}
tests:
  - {name: vip plan, request: {user: {id: u1, plan: vip, name: Dana}}, expect: {rule: vip, personaConfig: {name: "VIP desk for Dana (u1)"}}}
`,
	})
}

func TestJWTModeEndToEnd(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, nil)
	s := startService(t, map[string]string{"ANAM_API_KEY": testKey, "AUTH_MODE": "jwt", "JWT_SECRET": jwtSecret,
		"JWT_ISSUER": "https://idp.example", "JWT_AUDIENCE": "persona-router"},
		append(securityConfig(t), "--anam-url", u.URL)...)
	good := jwt.MapClaims{"sub": "u1", "plan": "vip", "name": "Dana", "iss": "https://idp.example", "aud": "persona-router", "exp": time.Now().Add(time.Hour).Unix()}

	a := s.post(t, "/api/session-token", nil, "Authorization", "Bearer "+hs256(t, good))
	if a.status != 200 || a.body["persona"] != "vip" {
		t.Fatalf("valid token: %d %s", a.status, a.raw)
	}
	if name := u.requests()[0].body["personaConfig"].(map[string]any)["name"]; name != "VIP desk for Dana (u1)" {
		t.Errorf("the claims did not reach the template: name %v", name)
	}

	expired := jwt.MapClaims{"sub": "u1", "iss": "https://idp.example", "aud": "persona-router", "exp": time.Now().Add(-time.Hour).Unix()}
	wrongAud := jwt.MapClaims{"sub": "u1", "iss": "https://idp.example", "aud": "other", "exp": time.Now().Add(time.Hour).Unix()}
	for name, tc := range map[string]struct{ auth, reason string }{
		"no token":       {"", "missing"},
		"expired":        {"Bearer " + hs256(t, expired), "expired"},
		"wrong audience": {"Bearer " + hs256(t, wrongAud), "wrong_audience"},
		"garbage":        {"Bearer abc.def.ghi", "malformed"},
	} {
		a := s.post(t, "/api/session-token", nil, "Authorization", tc.auth)
		if a.status != http.StatusUnauthorized || a.body["code"] != "unauthorized" || !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: %d %s %v", name, a.status, a.raw, a.header)
		}
		if got := s.metric(t, `persona_router_auth_failures_total{reason="`+tc.reason+`"}`); got != 1 {
			t.Errorf("%s: auth_failures_total{reason=%q} = %v, want 1", name, tc.reason, got)
		}
	}
	if n := len(u.requests()); n != 1 {
		t.Errorf("Anam received %d requests, want 1 (none for refused identities)", n)
	}
	// The admin API takes a user object whatever the mode.
	s2 := startService(t, map[string]string{"ANAM_API_KEY": testKey, "AUTH_MODE": "jwt", "JWT_SECRET": jwtSecret, "ADMIN_TOKEN": adminToken},
		append(securityConfig(t), "--anam-url", u.URL)...)
	if a := s2.post(t, "/admin/explain", []byte(`{"user": {"id": "boss", "name": "B"}}`), "Authorization", "Bearer "+adminToken); a.body["persona"] != "vip" {
		t.Errorf("admin explain with a user: %d %s", a.status, a.raw)
	}
}

func TestJWTWithoutIssuerOrAudienceSaysSo(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, nil)
	s := startService(t, map[string]string{"ANAM_API_KEY": testKey, "AUTH_MODE": "jwt", "JWT_SECRET": jwtSecret,
		"JWT_ISSUER": "https://idp.example", "JWT_AUDIENCE": "persona-router"},
		append(securityConfig(t), "--anam-url", u.URL)...)
	exp := time.Now().Add(time.Hour).Unix()
	for name, tc := range map[string]struct {
		claims  jwt.MapClaims
		reason  string
		message string
	}{
		"no iss": {jwt.MapClaims{"sub": "u1", "aud": "persona-router", "exp": exp}, "wrong_issuer", `the token has no iss claim (expected "https://idp.example")`},
		"no aud": {jwt.MapClaims{"sub": "u1", "iss": "https://idp.example", "exp": exp}, "wrong_audience", `the token has no aud claim (expected "persona-router")`},
	} {
		a := s.post(t, "/api/session-token", nil, "Authorization", "Bearer "+hs256(t, tc.claims))
		msg, ok := a.body["error"]
		if a.status != http.StatusUnauthorized || !ok || msg != tc.message {
			t.Errorf("%s: %d %s, want 401 saying %q", name, a.status, a.raw, tc.message)
		}
		if got := s.metric(t, `persona_router_auth_failures_total{reason="`+tc.reason+`"}`); got != 1 {
			t.Errorf("%s: auth_failures_total{reason=%q} = %v, want 1", name, tc.reason, got)
		}
	}
	if got := s.metric(t, `persona_router_auth_failures_total{reason="invalid"}`); got != 0 {
		t.Errorf(`auth_failures_total{reason="invalid"} = %v, want 0`, got)
	}
}

func TestBearerSchemeInAnyCase(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, nil)
	s := startService(t, map[string]string{"ANAM_API_KEY": testKey, "AUTH_MODE": "jwt", "JWT_SECRET": jwtSecret, "ADMIN_TOKEN": adminToken},
		append(securityConfig(t), "--anam-url", u.URL)...)
	token := hs256(t, jwt.MapClaims{"sub": "u1", "plan": "vip", "exp": time.Now().Add(time.Hour).Unix()})
	for _, scheme := range []string{"Bearer", "bearer", "BEARER"} {
		if a := s.post(t, "/api/session-token", nil, "Authorization", scheme+" "+token); a.status != http.StatusOK {
			t.Errorf("token endpoint with %q: %d %s, want 200", scheme, a.status, a.raw)
		}
		if a := s.post(t, "/admin/explain", nil, "Authorization", scheme+" "+adminToken); a.status != http.StatusOK {
			t.Errorf("admin API with %q: %d %s, want 200", scheme, a.status, a.raw)
		}
	}
	if a := s.post(t, "/admin/explain", nil, "Authorization", "Basic "+adminToken); a.status != http.StatusUnauthorized {
		t.Errorf("admin API with another scheme: %d %s, want 401", a.status, a.raw)
	}
}

func TestJWTModeWithJWKS(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "k1"}})
	if err != nil {
		t.Fatal(err)
	}
	store := jwkset.NewMemoryStorage()
	if err := store.KeyWrite(t.Context(), jwk); err != nil {
		t.Fatal(err)
	}
	raw, _ := store.JSONPublic(t.Context())
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(raw) }))
	defer jwks.Close()

	u := newUpstream(t, nil)
	s := startService(t, map[string]string{"ANAM_API_KEY": testKey}, append(securityConfig(t), "--anam-url", u.URL, "--auth", "jwt", "--jwt-jwks-url", jwks.URL)...)
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": "boss", "name": "B", "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = "k1"
	signed, _ := tok.SignedString(key)
	if a := s.post(t, "/api/session-token", nil, "Authorization", "Bearer "+signed); a.status != 200 || a.body["persona"] != "vip" {
		t.Errorf("RS256 token: %d %s", a.status, a.raw)
	}
	// HS256 is refused: no secret is configured, and the RSA key is never an HMAC secret.
	if a := s.post(t, "/api/session-token", nil, "Authorization", "Bearer "+hs256(t, jwt.MapClaims{"sub": "x", "exp": time.Now().Add(time.Hour).Unix()})); a.status != 401 {
		t.Errorf("HS256 token with only a JWKS: %d %s", a.status, a.raw)
	}
}

func TestHeaderModeEndToEnd(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, nil)
	s := startService(t, map[string]string{"ANAM_API_KEY": testKey}, append(securityConfig(t), "--anam-url", u.URL, "--auth", "header")...)
	if !strings.Contains(s.logs.String(), "only safe behind an authenticating proxy") {
		t.Error("no warning that header mode needs a proxy")
	}
	a := s.post(t, "/api/session-token", nil, "X-Forwarded-User", "boss", "X-Forwarded-Email", "boss@example.com")
	if a.status != 200 || a.body["persona"] != "vip" {
		t.Fatalf("with proxy headers: %d %s", a.status, a.raw)
	}
	if name := u.requests()[0].body["personaConfig"].(map[string]any)["name"]; name != "VIP desk for  (boss@example.com)" {
		t.Errorf("name = %v", name)
	}
	if a := s.post(t, "/api/session-token", nil); a.status != 401 || a.header.Get("WWW-Authenticate") == "" {
		t.Errorf("without proxy headers: %d %s", a.status, a.raw)
	}
	custom := startService(t, map[string]string{"ANAM_API_KEY": testKey, "USER_HEADER": "X-Auth-Request-User"}, append(securityConfig(t), "--anam-url", u.URL, "--auth", "header")...)
	if a := custom.post(t, "/api/session-token", nil, "X-Auth-Request-User", "boss"); a.status != 200 {
		t.Errorf("custom user header: %d %s", a.status, a.raw)
	}
}

func TestInputIsChecked(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, nil)
	s := startService(t, map[string]string{"ANAM_API_KEY": testKey}, append(securityConfig(t), "--anam-url", u.URL)...)
	for body, want := range map[string]struct {
		status int
		code   string
		msg    string
	}{
		`{"metadata": {"tier": "pro", "seats": 5}}`:      {200, "", ""},
		`{"metadata": {"tier": "gold"}}`:                 {422, "invalid_metadata", `metadata.tier must be one of "free", "pro", "enterprise", got "gold"`},
		`{"metadata": {"seats": 0.5}}`:                   {422, "invalid_metadata", "metadata.seats must be an integer, got 0.5"},
		`{"metadata": {"region": "EU"}}`:                 {422, "invalid_metadata", "metadata.region is not declared (declared: avatar, seats, tier)"},
		`{"context": "sales; DROP TABLE"}`:               {400, "invalid_request", "context must be at most 64 characters"},
		`{"context": "` + strings.Repeat("a", 65) + `"}`: {400, "invalid_request", "context must be at most 64 characters"},
		`{"context": "customer-support.v2_beta"}`:        {200, "", ""},
	} {
		a := s.post(t, "/api/session-token", []byte(body))
		if a.status != want.status || (want.code != "" && (a.body["code"] != want.code || a.body["error"] != want.msg && !strings.HasPrefix(a.body["error"].(string), want.msg))) {
			t.Errorf("%s: %d %s, want %d %s %q", body, a.status, a.raw, want.status, want.code, want.msg)
		}
	}

	// Without a schema the generic bounds apply.
	plain := startWithUpstream(t, u, nil)
	for body, want := range map[string]string{
		`{"metadata": {"note": "` + strings.Repeat("x", 1025) + `"}}`: "metadata.note is 1025 bytes long, more than 1024",
		`{"metadata": {"a": {"b": {"c": {"d": {"e": 1}}}}}}`:          "metadata.a.b.c.d nests deeper than 4 levels",
	} {
		if a := plain.post(t, "/api/session-token", []byte(body)); a.status != 422 || a.body["error"] != want {
			t.Errorf("%.60s: %d %s", body, a.status, a.raw)
		}
	}
}

func TestRateLimiting(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, nil)
	s := startService(t, map[string]string{"ANAM_API_KEY": testKey, "RATE_LIMIT": "3/min"},
		append(securityConfig(t), "--anam-url", u.URL, "--auth", "header")...)
	as := func(user string, headers ...string) answer {
		return s.post(t, "/api/session-token", nil, append([]string{"X-Forwarded-User", user}, headers...)...)
	}
	for i := range 3 {
		if a := as("alice"); a.status != 200 {
			t.Fatalf("request %d of alice's burst: %d %s", i+1, a.status, a.raw)
		}
	}
	a := as("alice")
	if a.status != http.StatusTooManyRequests || a.body["code"] != "rate_limited" {
		t.Fatalf("alice's 4th request: %d %s", a.status, a.raw)
	}
	if secs, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || secs < 1 || secs > 20 {
		t.Errorf("Retry-After = %q, want whole seconds until the next request is allowed (about 20)", a.header.Get("Retry-After"))
	}
	if a := as("bob"); a.status != 200 {
		t.Errorf("bob limited by alice's requests: %d", a.status)
	}
	if got := s.metric(t, "persona_router_rate_limited_total"); got != 1 {
		t.Errorf("rate_limited_total = %v", got)
	}
	if n := len(u.requests()); n != 4 {
		t.Errorf("Anam received %d requests, want 4", n)
	}
}

func TestRateLimitKeyIsTheClientAddress(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, nil)
	// Anonymous callers are keyed by address; X-Forwarded-For from an untrusted peer is ignored.
	s := startService(t, map[string]string{"ANAM_API_KEY": testKey}, append(securityConfig(t), "--anam-url", u.URL, "--rate-limit", "2/h")...)
	for i, xff := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"} {
		a := s.post(t, "/api/session-token", nil, "X-Forwarded-For", xff)
		if want := map[bool]int{true: 200, false: 429}[i < 2]; a.status != want {
			t.Errorf("spoofed X-Forwarded-For %s: %d, want %d (the socket address is the key)", xff, a.status, want)
		}
	}

	// Behind a trusted proxy, X-Forwarded-For tells clients apart.
	trusted := startService(t, map[string]string{"ANAM_API_KEY": testKey, "TRUSTED_PROXIES": "127.0.0.0/8"},
		append(securityConfig(t), "--anam-url", u.URL, "--rate-limit", "2/h")...)
	for _, client := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"} {
		for i := range 2 {
			if a := trusted.post(t, "/api/session-token", nil, "X-Forwarded-For", client); a.status != 200 {
				t.Errorf("client %s request %d via a trusted proxy: %d", client, i+1, a.status)
			}
		}
	}
	if a := trusted.post(t, "/api/session-token", nil, "X-Forwarded-For", "203.0.113.1"); a.status != 429 {
		t.Errorf("client 203.0.113.1's 3rd request: %d, want 429", a.status)
	}
}

func TestSecurityStartupRefusals(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"jwt without keys": {map[string]string{"AUTH_MODE": "jwt"}, "--auth jwt needs JWT_SECRET"},
		"short secret":     {map[string]string{"AUTH_MODE": "jwt", "JWT_SECRET": "short"}, "JWT_SECRET is 5 bytes; use at least 32"},
		"unknown mode":     {map[string]string{"AUTH_MODE": "oauth"}, "--auth must be none, jwt or header"},
		"bad rate":         {map[string]string{"RATE_LIMIT": "10/day"}, "unit must be s, min or h"},
		"bad proxy":        {map[string]string{"TRUSTED_PROXIES": "10.0.0.0/33"}, `"10.0.0.0/33" is not a CIDR`},
	} {
		t.Run(name, func(t *testing.T) {
			tc.env["ANAM_API_KEY"] = "k"
			var sb strings.Builder
			err := run(t.Context(), []string{"persona-router", "serve", "--addr", "127.0.0.1:0", "--rules", "../../rules", "--personas", "../../personas"},
				func(k string) string { return tc.env[k] }, &sb, &sb)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
