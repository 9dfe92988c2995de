package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/persona-router/persona-router/internal/config/configtest"
)

// playgroundServer is a Server with a metadata schema, and the admin API on when token is set.
func playgroundServer(t *testing.T, token string) *Server {
	t.Helper()
	files := map[string]string{
		"personas/default.yaml": "name: \"Cara {{ metadata.tier ?? '' }}\"\navatarId: 30fa96d0-26c4-4e55-94a0-517025942e18\nvoiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b\n",
		"rules/a.yaml": "metadata:\n  tier: {type: string, enum: [free, pro]}\n  seats: {type: integer, min: 1}\n" +
			"rules:\n  - {name: pro, when: 'metadata.tier == \"pro\"', persona: default}\n",
	}
	snap := configtest.Load(t, files)
	srv, err := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Configs: fixed{snap}, Anam: fakeMinter{}, Metrics: NewMetrics(), AdminToken: token})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func get(srv *Server, path string, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	return rec
}

func TestPlaygroundIsServedWithoutTokenUnderAStrictPolicy(t *testing.T) {
	srv := playgroundServer(t, "admin-secret")
	for _, tc := range []struct {
		path, contentType string
	}{
		{"/admin/playground", "text/html; charset=utf-8"},
		{"/admin/playground.js", "text/javascript; charset=utf-8"},
		{"/admin/playground.css", "text/css; charset=utf-8"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			rec := get(srv, tc.path)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d without a token, want 200: %s", rec.Code, rec.Body)
			}
			if got := rec.Header().Get("Content-Type"); got != tc.contentType {
				t.Errorf("Content-Type %q, want %q", got, tc.contentType)
			}
			csp := rec.Header().Get("Content-Security-Policy")
			for _, directive := range []string{
				"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
				"frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'", "require-trusted-types-for 'script'",
			} {
				if !strings.Contains(csp, directive+";") && !strings.HasSuffix(csp, directive) {
					t.Errorf("Content-Security-Policy %q lacks %q", csp, directive)
				}
			}
			if strings.Contains(csp, "unsafe") || strings.Contains(csp, "*") || strings.Contains(csp, "http") {
				t.Errorf("Content-Security-Policy %q allows more than the page's own files", csp)
			}
			if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q, want nosniff", got)
			}
			if got := rec.Header().Get("X-Frame-Options"); got != "DENY" {
				t.Errorf("X-Frame-Options %q, want DENY", got)
			}
			if rec.Body.Len() == 0 {
				t.Error("empty body")
			}
		})
	}
}

// The policy allows no inline script or style and nothing from elsewhere: the page must not
// need them. And the script writes text, never markup.
func TestPlaygroundNeedsNothingThePolicyForbids(t *testing.T) {
	html := string(playgroundHTML)
	scripts := regexp.MustCompile(`<script[^>]*>`).FindAllString(html, -1)
	if len(scripts) != 1 || scripts[0] != `<script src="/admin/playground.js" defer>` {
		t.Errorf("script tags %q, want only the page's own script", scripts)
	}
	for _, forbidden := range []*regexp.Regexp{
		regexp.MustCompile(`<style`), regexp.MustCompile(`\sstyle=`), regexp.MustCompile(`\son[a-z]+=`),
		regexp.MustCompile(`(src|href)="(https?:)?//`), regexp.MustCompile(`(src|href)="[^/"]`),
	} {
		if m := forbidden.FindString(html); m != "" {
			t.Errorf("the page holds %q, which its policy forbids", m)
		}
	}
	js := string(playgroundJS)
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute(\"style\"", "localStorage"} {
		if strings.Contains(js, sink) {
			t.Errorf("playground.js uses %s", sink)
		}
	}
	if !strings.Contains(js, "sessionStorage") || !strings.Contains(js, `Authorization: "Bearer " + token()`) {
		t.Error("playground.js does not keep the token in sessionStorage and send it as a bearer header")
	}
	if strings.Contains(string(playgroundCSS), "@import") || strings.Contains(string(playgroundCSS), "url(") {
		t.Error("playground.css loads something")
	}
}

func TestPlaygroundIsAbsentWithoutTheAdminAPI(t *testing.T) {
	srv := playgroundServer(t, "")
	for _, path := range []string{"/admin/playground", "/admin/playground.js", "/admin/playground.css", "/admin/metadata-schema"} {
		if rec := get(srv, path); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s without the admin API: %d, want 404", path, rec.Code)
		}
	}
}

func TestAdminCallsStillNeedTheToken(t *testing.T) {
	srv := playgroundServer(t, "admin-secret")
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/admin/explain"},
		{http.MethodPost, "/admin/split"},
		{http.MethodPost, "/admin/reload"},
		{http.MethodGet, "/admin/config"},
		{http.MethodGet, "/admin/metadata-schema"},
	} {
		for _, auth := range []string{"", "Bearer wrong", "admin-secret"} {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader("{}"))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("%s %s with Authorization %q: %d, want 401", tc.method, tc.path, auth, rec.Code)
			}
		}
	}
}

func TestAdminMetadataSchemaListsTheDeclaredKeys(t *testing.T) {
	srv := playgroundServer(t, "admin-secret")
	rec := get(srv, "/admin/metadata-schema", "Authorization", "Bearer admin-secret")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var got struct {
		ConfigVersion string           `json:"configVersion"`
		Keys          []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := `[{"enum":["free","pro"],"name":"tier","type":"string"}]`
	// Keys come sorted by name: seats, then tier.
	if len(got.Keys) != 2 {
		t.Fatalf("keys %v, want seats then tier", got.Keys)
	}
	name, hasName := got.Keys[0]["name"]
	typ, hasType := got.Keys[0]["type"]
	_, hasEnum := got.Keys[0]["enum"] // enum only when declared
	if !hasName || name != "seats" || !hasType || typ != "integer" || hasEnum {
		t.Errorf("keys %v, want seats (integer, no enum) then tier", got.Keys)
	}
	if tier, _ := json.Marshal([]map[string]any{got.Keys[1]}); string(tier) != want {
		t.Errorf("tier %s, want %s", tier, want)
	}
	if got.ConfigVersion == "" {
		t.Error("no configVersion")
	}
}
