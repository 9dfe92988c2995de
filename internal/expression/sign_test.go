package expression

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef-the-test-secret")

// testMAC is the signing key of the tests that build layouts by hand.
var testMAC = NewCompiler(WithSigningSecret(testSecret)).Layout().mac

// verifySigned is a webhook's check of a signed URL, written from the description of Anam's
// recipe "ephemeral webhook tools" (docs/configuration.md quotes it): base is the URL the webhook is
// registered under, the one given to sign().
func verifySigned(r *http.Request, base string, secret []byte) (uid string, err error) {
	b, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	q := r.URL.Query()
	for k, v := range b.Query() { // the request must be for this webhook: path and own query
		if !slices.Equal(q[k], v) {
			return "", errors.New("signed URL: not this webhook's URL")
		}
	}
	if r.URL.Path != b.Path {
		return "", errors.New("signed URL: not this webhook's URL")
	}
	uid, exp, sig := q.Get("uid"), q.Get("exp"), q.Get("sig")
	expiry, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || uid == "" || expiry <= time.Now().Unix() {
		return "", errors.New("signed URL: missing, malformed or expired")
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(base + "|" + uid + "|" + exp))
	if !hmac.Equal([]byte(sig), []byte(hex.EncodeToString(mac.Sum(nil)))) {
		return "", errors.New("signed URL: bad signature")
	}
	return uid, nil
}

// signOnce compiles src with the test secret and evaluates it for in.
func signOnce(t *testing.T, src string, in Input) (string, error) {
	t.Helper()
	c := NewCompiler(WithSigningSecret(testSecret))
	p, err := c.Compile(src)
	if err != nil {
		t.Fatalf("Compile(%q): %v", src, err)
	}
	ev := Acquire(in, c.Layout())
	defer ev.Release()
	v, err := ev.Eval(p)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		t.Fatalf("%s = %v (%T), want a string", src, v, v)
	}
	return s, nil
}

// expiryOf is the exp parameter of a signed URL.
func expiryOf(t *testing.T, signed string) int64 {
	t.Helper()
	u, err := url.Parse(signed)
	if err != nil {
		t.Fatal(err)
	}
	exp, err := strconv.ParseInt(u.Query().Get("exp"), 10, 64)
	if err != nil {
		t.Fatalf("%s: exp: %v", signed, err)
	}
	return exp
}

func user(id any) map[string]any { return map[string]any{"id": id} }

// A webhook written from the recipe verifies every URL we sign, and reads back the user.
func TestSignedURLsVerify(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	for _, tc := range []struct {
		name, src, base, uid string
		metadata             map[string]any
		ttl                  int64
	}{
		{"plain URL", `sign("https://hooks.example.com/calendar")`, "https://hooks.example.com/calendar", "u-1002", nil, 3600},
		{"URL with a query", `sign("https://hooks.example.com/calendar?tool=list&v=2")`, "https://hooks.example.com/calendar?tool=list&v=2", "u-1002", nil, 3600},
		{"id needing escapes", `sign("https://hooks.example.com/calendar")`, "https://hooks.example.com/calendar", "a b&c/é", nil, 3600},
		{"id with query syntax", `sign("https://hooks.example.com/calendar?x=1")`, "https://hooks.example.com/calendar?x=1", "x+y%z=w?#|", nil, 3600},
		{"custom lifetime", `sign("https://hooks.example.com/book", 600)`, "https://hooks.example.com/book", "u-7", nil, 600},
		{"longest lifetime", `sign("https://hooks.example.com/book", 7 * 24 * 3600)`, "https://hooks.example.com/book", "u-7", nil, 604800},
		{"URL and lifetime from metadata", `sign(metadata.hook, metadata.ttl)`, "https://hooks.example.com/t/1", "u-8",
			map[string]any{"hook": "https://hooks.example.com/t/1", "ttl": 120.0}, 120},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signed, err := signOnce(t, tc.src, Input{User: user(tc.uid), Metadata: tc.metadata, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			sep := "?"
			if strings.Contains(tc.base, "?") {
				sep = "&"
			}
			if !strings.HasPrefix(signed, tc.base+sep+"uid=") {
				t.Errorf("%s does not start with %s%suid=", signed, tc.base, sep)
			}
			if got, want := expiryOf(t, signed), now.Unix()+tc.ttl; got != want {
				t.Errorf("exp = %d, want %d", got, want)
			}
			uid, err := verifySigned(httptest.NewRequest(http.MethodPost, signed, nil), tc.base, testSecret)
			if err != nil || uid != tc.uid {
				t.Errorf("verifySigned(%s) = %q, %v; want %q", signed, uid, err, tc.uid)
			}
		})
	}
}

// Whatever is changed in a signed URL, or a different secret, fails verification.
func TestTamperedURLsFail(t *testing.T) {
	const base = "https://hooks.example.com/calendar"
	signed, err := signOnce(t, `sign("`+base+`")`, Input{User: user("u-1002")})
	if err != nil {
		t.Fatal(err)
	}
	exp := strconv.FormatInt(expiryOf(t, signed), 10)
	expired, err := signOnce(t, `sign("`+base+`", 60)`, Input{User: user("u-1002"), Now: time.Now().Add(-2 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	flipped := "0"
	if strings.HasSuffix(signed, "0") {
		flipped = "1"
	}
	for _, tc := range []struct {
		name, url, base string
		secret          []byte
		ok              bool
	}{
		{"untouched", signed, base, testSecret, true},
		{"another user", strings.Replace(signed, "uid=u-1002", "uid=u-1003", 1), base, testSecret, false},
		{"a later expiry", strings.Replace(signed, "exp="+exp, "exp="+strconv.FormatInt(expiryOf(t, signed)+86400, 10), 1), base, testSecret, false},
		{"another signature", signed[:len(signed)-1] + flipped, base, testSecret, false},
		{"no signature", signed[:strings.Index(signed, "&sig=")], base, testSecret, false},
		{"another path, this webhook", strings.Replace(signed, "/calendar", "/admin", 1), base, testSecret, false},
		{"another path, that webhook", strings.Replace(signed, "/calendar", "/admin", 1), "https://hooks.example.com/admin", testSecret, false},
		{"an added query", strings.Replace(signed, "?", "?tool=delete&", 1), base + "?tool=delete", testSecret, false},
		{"another secret", signed, base, []byte("another-secret-of-at-least-32-bytes!"), false},
		{"expired", expired, base, testSecret, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uid, err := verifySigned(httptest.NewRequest(http.MethodPost, tc.url, nil), tc.base, tc.secret)
			if ok := err == nil; ok != tc.ok {
				t.Errorf("verifySigned(%s) = %q, %v; want ok=%v", tc.url, uid, err, tc.ok)
			}
		})
	}
}

// fakeClock makes every reading of the clock an hour later than the one before, so a second
// reading can never give the same expiry.
func fakeClock(t *testing.T) {
	t.Helper()
	at := time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)
	clock = func() time.Time {
		at = at.Add(time.Hour)
		return at
	}
	t.Cleanup(func() { clock = time.Now })
}

// All URLs of one request expire together, from the request's time, read once per Acquire.
func TestSignSharesOneExpiry(t *testing.T) {
	fakeClock(t)
	c := NewCompiler(WithSigningSecret(testSecret))
	both, err := c.Compile(`sign("https://a.example/x") + " " + sign("https://b.example/y", 3600)`)
	if err != nil {
		t.Fatal(err)
	}
	first, err := c.Compile(`sign("https://a.example/x")`)
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Compile(`{"tool": sign("https://b.example/y?q=1")}.tool`)
	if err != nil {
		t.Fatal(err)
	}
	layout := c.Layout()
	in := Input{User: user("u-1")}
	evalAll := func(ev *Evaluator, progs ...*vm.Program) []int64 {
		t.Helper()
		var exps []int64
		for _, p := range progs {
			v, err := ev.Eval(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range strings.Fields(v.(string)) {
				exps = append(exps, expiryOf(t, u))
			}
		}
		return exps
	}

	ev := Acquire(in, layout)
	exps := evalAll(ev, both, first, second)
	ev.Release()
	// The fake clock's first reading is 13:00.
	want := time.Date(2026, 5, 4, 13, 0, 0, 0, time.UTC).Unix() + 3600
	if len(exps) != 4 || slices.ContainsFunc(exps, func(e int64) bool { return e != want }) {
		t.Errorf("one request's expiries = %v, want four times %d", exps, want)
	}

	// The next request reads the clock again, though it may get the same pooled Evaluator.
	ev = Acquire(in, layout)
	next := evalAll(ev, first)
	ev.Release()
	if next[0] <= exps[0] {
		t.Errorf("the next request's expiry is %d, want it after the previous request's %d", next[0], exps[0])
	}

	// Input.Now is the request's time: the clock is not read.
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	ev = Acquire(Input{User: user("u-1"), Now: now}, layout)
	fixed := evalAll(ev, both, first)
	ev.Release()
	for _, e := range fixed {
		if e != now.Unix()+3600 {
			t.Errorf("with Input.Now = %v, expiries = %v, want all %d", now, fixed, now.Unix()+3600)
			break
		}
	}
}

// No URL is ever signed for a request without a signed-in user.
func TestSignNeedsASignedInUser(t *testing.T) {
	for _, tc := range []struct {
		name string
		user map[string]any
	}{
		{"anonymous", nil},
		{"no id", map[string]any{"email": "a@example.com"}},
		{"id not a string", user(42.0)},
		{"id null", user(nil)},
		{"id empty", user("")},
		{"id a list", user([]any{"u-1"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := signOnce(t, `sign("https://hooks.example.com/calendar")`, Input{User: tc.user})
			if !errors.Is(err, ErrAnonymous) || !strings.Contains(err.Error(), "sign() needs a signed-in user (user.id)") {
				t.Errorf("got %q, %v; want ErrAnonymous", got, err)
			}
		})
	}
}

// Without a secret (or with one too short to use), sign() does not compile; expressions that
// do not call it are unaffected.
func TestSignNeedsASecret(t *testing.T) {
	const want = "sign() needs a signing secret: set TOOL_SIGNING_SECRET (at least 32 bytes) in the service's environment"
	compilers := map[string]*Compiler{
		"none":     NewCompiler(),
		"empty":    NewCompiler(WithSigningSecret(nil)),
		"31 bytes": NewCompiler(WithSigningSecret(testSecret[:31])),
	}
	for name, c := range compilers {
		for _, src := range []string{
			`sign("https://x.example")`,
			`"https://x.example" | sign()`,
			`let u = "https://x.example"; [sign(u, 60)]`,
			`context == "a" ? sign(metadata.hook) : ""`,
		} {
			if _, err := c.Compile(src); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("secret %s, Compile(%s): %v; want %q", name, src, err, want)
			}
			if _, err := c.Check(src); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("secret %s, Check(%s): %v; want %q", name, src, err, want)
			}
		}
		if _, err := c.Compile(`bucket(user.id) < 50`); err != nil {
			t.Errorf("secret %s: an expression without sign(): %v", name, err)
		}
	}
	if _, err := NewCompiler(WithSigningSecret(testSecret[:32])).Compile(`sign("https://x.example")`); err != nil {
		t.Errorf("a secret of 32 bytes: %v", err)
	}
}

// The lifetime is a whole number of seconds from 1 to 7 days: a constant outside that does not
// compile, a value from the request outside that fails the evaluation.
func TestSignLifetime(t *testing.T) {
	c := NewCompiler(WithSigningSecret(testSecret))
	for src, want := range map[string]string{
		`sign("https://x.example", 0)`:                  "sign()'s lifetime must be from 1 to 604800 seconds (7 days), got 0",
		`sign("https://x.example", -60)`:                "got -60",
		`sign("https://x.example", 604801)`:             "got 604801",
		`sign("https://x.example", 7 * 24 * 3600 + 1)`:  "got 604801",
		`"a" + sign("https://x.example", 1 - 1) + "b"`:  "got 0",
		`sign("https://x.example", 60.5)`:               "cannot use float64 as argument",
		`sign("https://x.example", "60")`:               "cannot use string as argument",
		`sign("https://x.example", 60, 1)`:              "too many arguments",
		`sign()`:                                        "not enough arguments",
		`map([1, 2], sign("https://x.example", 0 * #))`: "",
	} {
		_, err := c.Compile(src)
		if want == "" {
			if err != nil {
				t.Errorf("Compile(%s): %v; want no error (its lifetime is not constant)", src, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Compile(%s): %v; want an error containing %q", src, err, want)
		}
	}
	for _, ttl := range []any{0.0, -5.0, 604801.0, 1.5, "60", nil, true, []any{60.0}} {
		_, err := signOnce(t, `sign("https://x.example", metadata.ttl)`, Input{User: user("u"), Metadata: map[string]any{"ttl": ttl}})
		if err == nil || !strings.Contains(err.Error(), "sign: the lifetime must be a whole number of seconds from 1 to 604800 (7 days)") {
			t.Errorf("ttl %#v: %v; want the lifetime refused", ttl, err)
		}
	}
	now := time.Now()
	for _, ttl := range []any{1.0, 60.0, 604800.0} {
		signed, err := signOnce(t, `sign("https://x.example", metadata.ttl)`, Input{User: user("u"), Metadata: map[string]any{"ttl": ttl}, Now: now})
		if err != nil || expiryOf(t, signed) != now.Unix()+int64(ttl.(float64)) {
			t.Errorf("ttl %v: %q, %v", ttl, signed, err)
		}
	}
}

// A URL that is not a string, or whose appended query would land in its fragment, is refused.
func TestSignRefusesBadURLs(t *testing.T) {
	for src, want := range map[string]string{
		`sign(metadata.missing)`:                     "sign: the URL must be a string, got nil",
		`sign(metadata.n)`:                           "sign: the URL must be a string, got a float64",
		`sign("https://x.example/app#/calendar")`:    "sign: the URL must not have a fragment",
		`sign(metadata.hook ?? "https://x.example")`: "sign: the URL must not have a fragment",
	} {
		got, err := signOnce(t, src, Input{User: user("u"), Metadata: map[string]any{"n": 1.0, "hook": "https://h.example/#x"}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s = %q, %v; want an error containing %q", src, got, err, want)
		}
	}
}

func TestCheckSigningSecret(t *testing.T) {
	for _, tc := range []struct {
		secret string
		ok     bool
	}{
		{"", false},
		{strings.Repeat("s", 31), false},
		{strings.Repeat("é", 15) + "x", false}, // 31 bytes
		{strings.Repeat("s", 32), true},
		{hex.EncodeToString(testSecret), true},
	} {
		err := CheckSigningSecret(tc.secret)
		if ok := err == nil; ok != tc.ok {
			t.Errorf("CheckSigningSecret(%d bytes) = %v, want ok=%v", len(tc.secret), err, tc.ok)
		}
		if err == nil {
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, "TOOL_SIGNING_SECRET") || !strings.Contains(msg, "32 bytes") {
			t.Errorf("CheckSigningSecret: %q, want it to name TOOL_SIGNING_SECRET and 32 bytes", msg)
		}
		if tc.secret != "" && strings.Contains(msg, tc.secret) {
			t.Errorf("CheckSigningSecret: %q quotes the secret", msg)
		}
	}
}

// The secret never shows: not in an error, nor in how the Compiler, its Layout or an
// Evaluator print, log or marshal.
func TestSecretNeverShows(t *testing.T) {
	c := NewCompiler(WithSigningSecret(testSecret))
	var texts []string
	for _, src := range []string{`sign("https://x.example", 0)`, `sign(1)`, `sign("a", "b")`, `unknown(1)`} {
		_, err := c.Compile(src)
		texts = append(texts, fmt.Sprint(err))
	}
	p, err := c.Compile(`sign(metadata.hook, metadata.ttl)`)
	if err != nil {
		t.Fatal(err)
	}
	layout := c.Layout()
	for _, in := range []Input{
		{},
		{User: user(1.0)},
		{User: user("u"), Metadata: map[string]any{"hook": "https://x.example", "ttl": 0.0}},
		{User: user("u"), Metadata: map[string]any{"hook": 3.0, "ttl": 60.0}},
		{User: user(string(testSecret)[:5]), Metadata: map[string]any{"hook": "https://x.example#f", "ttl": 60.0}},
	} {
		ev := Acquire(in, layout)
		_, err := ev.Eval(p)
		ev.Release()
		if err == nil {
			t.Fatalf("%+v: no error", in)
		}
		texts = append(texts, err.Error())
	}
	texts = append(texts, fmt.Sprint(CheckSigningSecret(string(testSecret[:31]))))
	ev := Acquire(Input{User: user("u")}, layout)
	if _, err := ev.Eval(p); err == nil {
		t.Fatal("no error")
	}
	for _, v := range []any{c, layout, ev, *c, *layout} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
			texts = append(texts, fmt.Sprintf(verb, v))
		}
		j, _ := json.Marshal(v)
		texts = append(texts, string(j))
	}
	ev.Release()
	for _, text := range texts {
		for _, form := range []string{string(testSecret), hex.EncodeToString(testSecret), fmt.Sprint(testSecret), fmt.Sprintf("%q", testSecret)} {
			if strings.Contains(text, form) {
				t.Errorf("%q shows the secret", text)
			}
		}
	}
}

// The estimate charges sign() for the longest user id: everyday uses fit the budget, signing
// in a loop over the request does not.
func TestSignIsEstimated(t *testing.T) {
	c := NewCompiler(WithSigningSecret(testSecret))
	for _, src := range []string{
		`sign("https://hooks.example.com/calendar")`,
		`sign(metadata.hook ?? "https://hooks.example.com/calendar", 600)`,
		`join(map(["calendar", "contacts", "mail"], sign("https://hooks.example.com/" + #)), " ")`,
		`user?.id != nil ? sign("https://hooks.example.com/calendar?v=2") : ""`,
		`join(map(metadata.hooks, sign(#)), " ")`,
	} {
		if _, err := c.Compile(src); err != nil {
			t.Errorf("%s: %v", src, err)
		}
	}
	for _, src := range []string{
		`map(1..200, sign("https://hooks.example.com/" + string(#)))`,
		`any(metadata.tags, any(metadata.tags, sign(# + #) == ""))`,
		`len(reduce(1..100, #acc + sign("https://x.example"), "")) > 0`,
	} {
		if _, err := c.Compile(src); err == nil || !strings.Contains(err.Error(), "over the budget") {
			t.Errorf("%s: %v, want it refused as over the budget", src, err)
		}
	}
}

// On the largest request within the bounds, signing stays within its estimate, in the steps
// and bytes the meter counts and in the length of the URL.
func TestSignStaysWithinItsEstimate(t *testing.T) {
	longest := strings.Repeat("é", signedIDBytes/2) // every byte escapes to three
	hook := "https://hooks.example.com/" + strings.Repeat("p", ValueBytes-len("https://hooks.example.com/"))
	tags := make([]any, 8)
	for i := range tags {
		tags[i] = hook
	}
	groups := make([]any, (ClaimsBytes-len(longest))/ValueBytes)
	for i := range groups {
		groups[i] = strings.Repeat("g", ValueBytes)
	}
	in := Input{User: map[string]any{"id": longest, "groups": groups}, Metadata: map[string]any{"hook": hook, "ttl": 604800.0, "tags": tags}}
	for _, src := range []string{
		`sign("https://hooks.example.com/calendar")`,
		`sign(metadata.hook)`,
		`sign(metadata.hook, metadata.ttl)`,
		`sign(sign(metadata.hook))`,
		`sign(string(user))`,
		`join(map(metadata.tags, sign(#, 60)), " ")`,
		`join(map(1..50, sign("https://h.example/" + string(#))), " ")`,
	} {
		p, vars, err := compile(src, true)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		_, cost, _ := build(src, vars, true)
		tree := mustParse(t, src)
		ev := Acquire(in, &Layout{vars: vars, mac: testMAC})
		v, err := ev.Eval(p)
		steps, bytes := ev.meter.steps, ev.meter.bytes
		ev.Release()
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if steps > cost.Steps || bytes > cost.Memory {
			t.Errorf("%s: estimated %+v, ran %d steps building %d bytes", src, cost, steps, bytes)
		}
		if _, ok := tree.(*ast.CallNode); ok {
			// The bound of a sign() call's value, as the estimate has it.
			r := (&estimator{vars: map[string]*bound{}}).node(tree)
			if got := int64(len(v.(string))); got > r.b.bytes {
				t.Errorf("%s: %d bytes, estimated at most %d", src, got, r.b.bytes)
			}
		}
	}
}

// Run without the estimate, signing in a long loop is stopped by the meter before it builds
// what it asks for.
func TestRunTimeGuardStopsSigning(t *testing.T) {
	src := `len(join(map(1..5000, sign(metadata.hook)), ",")) > 0`
	vars := variables(mustParse(t, src))
	p, _, err := build(src, vars, false)
	if err != nil {
		t.Fatal(err)
	}
	in := Input{User: user(strings.Repeat("é", 512)), Metadata: map[string]any{"hook": "https://hooks.example.com/" + strings.Repeat("p", 900)}}
	ev := Acquire(in, &Layout{vars: vars, mac: testMAC})
	defer ev.Release()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = ev.Eval(p)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrBudget) {
		t.Errorf("%v, want %v", err, ErrBudget)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("allocated %d bytes before it was stopped, want under 8 MiB", alloc)
	}
}

// What signing one webhook URL costs a request: acquire, sign for a UUID user, release.
func BenchmarkSign(b *testing.B) {
	c := NewCompiler(WithSigningSecret(testSecret))
	p, err := c.Compile(`sign("https://hooks.example.com/calendar")`)
	if err != nil {
		b.Fatal(err)
	}
	layout := c.Layout()
	in := Input{User: user("5b0c8a8e-3f0e-4a7c-9d65-2f7c1d9b4e21")}
	b.ReportAllocs()
	for b.Loop() {
		ev := Acquire(in, layout)
		if _, err := ev.Eval(p); err != nil {
			b.Fatal(err)
		}
		ev.Release()
	}
}
