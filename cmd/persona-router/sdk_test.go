package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSandboxTokenWorksWithAnamSDK wires Anam's real browser SDK (pinned by
// testdata/sdk/package-lock.json, installed with npm ci) to the sandbox: createClient() decodes
// the token and throws on anything that is not a JWT, so this is what a frontend developer
// meets. It needs Node.js and npm, which the project's machines have.
func TestSandboxTokenWorksWithAnamSDK(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to check sandbox tokens against Anam's SDK: %v", tool, err)
		}
	}
	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json", "check.mjs"} {
		data, err := os.ReadFile(filepath.Join("testdata", "sdk", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts")
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}

	s := startService(t, map[string]string{}, "--sandbox", "--rules", "../../rules", "--personas", "../../personas")
	check := exec.CommandContext(ctx, "node", "check.mjs", s.url)
	check.Dir = dir
	out, err := check.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("the SDK refused the sandbox token: %v\n%s%s", err, out, stderr)
	}
	var got struct{ Persona, OrganizationID string }
	if err := json.Unmarshal([]byte(strings.TrimSpace(string(out))), &got); err != nil {
		t.Fatalf("check.mjs printed %q: %v", out, err)
	}
	if got.Persona != "sales" || got.OrganizationID != "sandbox" {
		t.Errorf("SDK client = %+v, want persona sales and the sandbox account", got)
	}
}
