// Package identity tells who is asking for a session: nobody in particular, the subject of a
// verified JWT, or the user a trusted authenticating proxy names in a header.
package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/persona-router/persona-router/internal/schema"
)

// Failure is a request whose identity is missing or invalid. Reason is a short stable word for
// metrics; Message says what is wrong without repeating the credential.
type Failure struct {
	Reason  string
	Message string
	// Challenge is the WWW-Authenticate value to answer with.
	Challenge string
}

func (f *Failure) Error() string { return f.Reason + ": " + f.Message }

// Reasons lists every Failure.Reason, for pre-creating metric series.
var Reasons = []string{
	"missing", "malformed", "algorithm", "bad_signature", "unknown_key", "expired",
	"not_yet_valid", "wrong_issuer", "wrong_audience", "no_subject", "invalid", "too_large",
}

// MaxTokenBytes bounds a bearer token. With the bounds on each claim (schema.CheckBounds) it
// bounds what expressions can be given as `user`, which their cost estimate relies on.
const MaxTokenBytes = 16 << 10

// Identifier finds the user behind a request. user is nil for an anonymous request.
type Identifier interface {
	Identify(r *http.Request) (user map[string]any, err *Failure)
}

// Anonymous accepts every request without identity (--auth none).
type Anonymous struct{}

// Identify returns no user.
func (Anonymous) Identify(*http.Request) (map[string]any, *Failure) { return nil, nil }

// Header trusts the user named by an authenticating proxy (oauth2-proxy and the like) in
// request headers. It is safe only behind such a proxy, which must overwrite these headers on
// every request.
type Header struct {
	UserHeader  string
	EmailHeader string
}

const maxHeaderValue = 256

// Identify reads the user's id and email from the configured headers.
func (h Header) Identify(r *http.Request) (map[string]any, *Failure) {
	challenge := fmt.Sprintf(`Proxy realm="persona-router", header=%q`, h.UserHeader)
	id := r.Header.Get(h.UserHeader)
	if id == "" {
		return nil, &Failure{Reason: "missing", Message: "no " + h.UserHeader + " header: requests must come through the authenticating proxy", Challenge: challenge}
	}
	if !printable(id) {
		return nil, &Failure{Reason: "malformed", Message: h.UserHeader + " is not a printable value of at most 256 bytes", Challenge: challenge}
	}
	user := map[string]any{"id": id}
	if email := r.Header.Get(h.EmailHeader); email != "" {
		if !printable(email) {
			return nil, &Failure{Reason: "malformed", Message: h.EmailHeader + " is not a printable value of at most 256 bytes", Challenge: challenge}
		}
		user["email"] = email
	}
	return user, nil
}

func printable(s string) bool {
	return len(s) <= maxHeaderValue && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) })
}

// JWTOptions configure JWT verification.
type JWTOptions struct {
	// Secret verifies HS256, HS384 and HS512 tokens.
	Secret []byte
	// JWKSURL serves the public keys that verify RS*, ES* and EdDSA tokens.
	JWKSURL string
	// Issuer and Audience, when set, must match the token's iss and aud.
	Issuer, Audience string
	// HTTPClient fetches the JWKS.
	HTTPClient *http.Client
	// RefreshLimit bounds JWKS refreshes caused by tokens with an unknown key id.
	RefreshLimit rate.Limit
	// OnRefreshError reports a failed JWKS fetch.
	OnRefreshError func(err error)
}

// Leeway is the clock skew allowed on exp and nbf.
const Leeway = 30 * time.Second

// unknownKeyWait bounds how long a request with an unknown key id waits for a JWKS refresh.
const unknownKeyWait = time.Second

var (
	hmacMethods       = []string{"HS256", "HS384", "HS512"}
	asymmetricMethods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

// JWT verifies `Authorization: Bearer <JWT>`. A token is checked only against keys of its
// algorithm's family: HMAC tokens against the secret, others against the JWKS, so an RSA
// public key can never serve as an HMAC secret.
type JWT struct {
	secret  []byte
	jwks    keyfunc.Keyfunc
	methods []string
	parser  *jwt.Parser
	// issuer and audience are the required iss and aud, "" when not required.
	issuer, audience string
}

// NewJWT prepares verification. With a JWKS URL, keys are fetched now and refreshed hourly
// and whenever a token names an unknown key id (at most RefreshLimit per second); ctx ends the
// refreshing. A JWKS that cannot be fetched at start is not an error: tokens fail as having an
// unknown key until it can.
func NewJWT(ctx context.Context, opts JWTOptions) (*JWT, error) {
	if len(opts.Secret) == 0 && opts.JWKSURL == "" {
		return nil, errors.New("JWT verification needs JWT_SECRET (HS256/384/512) or JWT_JWKS_URL (RS256, ES256, EdDSA…)")
	}
	j := &JWT{issuer: opts.Issuer, audience: opts.Audience}
	if len(opts.Secret) > 0 {
		j.secret = opts.Secret
		j.methods = append(j.methods, hmacMethods...)
	}
	if opts.JWKSURL != "" {
		limit := opts.RefreshLimit
		if limit == 0 {
			limit = rate.Every(10 * time.Second)
		}
		onError := opts.OnRefreshError
		kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{opts.JWKSURL}, keyfunc.Override{
			Client:            opts.HTTPClient,
			HTTPTimeout:       10 * time.Second,
			RateLimitWaitMax:  unknownKeyWait,
			RefreshUnknownKID: rate.NewLimiter(limit, 1),
			RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
				return func(_ context.Context, err error) {
					if onError != nil {
						onError(err)
					}
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("JWT_JWKS_URL: %w", err)
		}
		j.jwks = kf
		j.methods = append(j.methods, asymmetricMethods...)
	}
	popts := []jwt.ParserOption{
		jwt.WithValidMethods(j.methods),
		jwt.WithLeeway(Leeway),
		jwt.WithExpirationRequired(),
	}
	if opts.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(opts.Issuer))
	}
	if opts.Audience != "" {
		popts = append(popts, jwt.WithAudience(opts.Audience))
	}
	j.parser = jwt.NewParser(popts...)
	return j, nil
}

const bearerChallenge = `Bearer realm="persona-router"`

func fail(reason, msg string) *Failure {
	return &Failure{Reason: reason, Message: msg,
		Challenge: fmt.Sprintf(`%s, error="invalid_token", error_description=%q`, bearerChallenge, msg)}
}

// Identify verifies the bearer token and returns its claims as the user, with id = sub.
func (j *JWT) Identify(r *http.Request) (map[string]any, *Failure) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return nil, &Failure{Reason: "missing", Message: "no Authorization header (expected Bearer <JWT>)", Challenge: bearerChallenge}
	}
	raw, ok := BearerToken(auth)
	if !ok {
		return nil, fail("malformed", "Authorization must be Bearer <JWT>")
	}
	if len(raw) > MaxTokenBytes {
		return nil, fail("too_large", fmt.Sprintf("the token is %d bytes, more than %d", len(raw), MaxTokenBytes))
	}
	claims := jwt.MapClaims{}
	if _, err := j.parser.ParseWithClaims(raw, claims, j.key(r.Context())); err != nil {
		return nil, j.classify(raw, claims, err)
	}
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return nil, fail("no_subject", "the token has no sub claim")
	}
	user := map[string]any(claims)
	if err := schema.CheckBounds("the token's claims", user); err != nil {
		return nil, fail("too_large", err.Error())
	}
	user["id"] = sub
	return user, nil
}

// BearerToken returns the token of an Authorization header value `Bearer <token>`. The scheme
// is matched case-insensitively, as RFC 7235 (section 2.1) requires: `bearer` and `BEARER` are
// the same scheme. ok is false for another scheme or an empty token.
func BearerToken(authorization string) (token string, ok bool) {
	scheme, token, found := strings.Cut(authorization, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(token, " ")
	return token, token != ""
}

// key returns the verification key of a token's own family only.
func (j *JWT) key(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		switch t.Method.(type) {
		case *jwt.SigningMethodHMAC:
			if j.secret == nil {
				return nil, errors.New("no secret for HMAC tokens")
			}
			return j.secret, nil
		}
		if j.jwks == nil {
			return nil, errors.New("no JWKS for asymmetric tokens")
		}
		key, err := j.jwks.KeyfuncCtx(ctx)(t)
		if err != nil {
			return nil, err
		}
		if set, ok := key.(jwt.VerificationKeySet); ok {
			// A token without kid is tried against every key of its family.
			fitting := jwt.VerificationKeySet{}
			for _, k := range set.Keys {
				if keyFits(t.Method, k) {
					fitting.Keys = append(fitting.Keys, k)
				}
			}
			if len(fitting.Keys) == 0 {
				return nil, fmt.Errorf("%w: no %s key in the JWKS", jwkset.ErrKeyNotFound, t.Method.Alg())
			}
			return fitting, nil
		}
		if !keyFits(t.Method, key) {
			return nil, fmt.Errorf("%w: the key named by kid is not a %s key", jwt.ErrTokenSignatureInvalid, t.Method.Alg())
		}
		return key, nil
	}
}

func keyFits(m jwt.SigningMethod, key any) bool {
	switch m.(type) {
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		_, ok := key.(*rsa.PublicKey)
		return ok
	case *jwt.SigningMethodECDSA:
		_, ok := key.(*ecdsa.PublicKey)
		return ok
	case *jwt.SigningMethodEd25519:
		_, ok := key.(ed25519.PublicKey)
		return ok
	}
	return false
}

// classify turns a verification error into a Failure; claims are the token's claims as far as
// they were decoded. The parser refuses an algorithm it does not accept (WithValidMethods) with
// the same error as a bad signature, so only then, off the success path, is the token's header
// read again to say which it was.
func (j *JWT) classify(raw string, claims jwt.MapClaims, err error) *Failure {
	if errors.Is(err, jwt.ErrTokenSignatureInvalid) || errors.Is(err, jwt.ErrTokenUnverifiable) {
		unverified, _, perr := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
		switch {
		case errors.Is(perr, jwt.ErrTokenUnverifiable):
			return fail("algorithm", fmt.Sprintf("the token's algorithm is not supported (accepted: %s)", strings.Join(j.methods, ", ")))
		case perr == nil && !slices.Contains(j.methods, unverified.Method.Alg()):
			return fail("algorithm", fmt.Sprintf("tokens signed with %s are not accepted (accepted: %s)", unverified.Method.Alg(), strings.Join(j.methods, ", ")))
		}
	}
	switch {
	case errors.Is(err, jwkset.ErrKeyNotFound), errors.Is(err, keyfunc.ErrKeyfunc):
		return fail("unknown_key", "the token's kid names no known key")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fail("malformed", "the token is not a well-formed JWT")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return fail("bad_signature", "the token's signature is not valid")
	case errors.Is(err, jwt.ErrTokenExpired):
		return fail("expired", "the token has expired")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return j.missingClaim(claims)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return fail("not_yet_valid", "the token is not valid yet")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return fail("wrong_issuer", "the token's issuer is not accepted")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return fail("wrong_audience", "the token's audience is not accepted")
	}
	return fail("invalid", "the token cannot be verified")
}

// missingClaim says which required claim a token lacks: iss and aud when they are configured,
// and exp always. golang-jwt names the claim only in its error text, so the decoded claims are
// read instead. A missing iss or aud counts as the wrong issuer or audience: either way the
// token was not issued by, or for, whom this service trusts.
func (j *JWT) missingClaim(claims jwt.MapClaims) *Failure {
	if iss, err := claims.GetIssuer(); err == nil && iss == "" && j.issuer != "" {
		return fail("wrong_issuer", fmt.Sprintf("the token has no iss claim (expected %q)", j.issuer))
	}
	if aud, err := claims.GetAudience(); err == nil && j.audience != "" && (len(aud) == 0 || len(aud) == 1 && aud[0] == "") {
		return fail("wrong_audience", fmt.Sprintf("the token has no aud claim (expected %q)", j.audience))
	}
	return fail("invalid", "the token has no exp claim")
}
