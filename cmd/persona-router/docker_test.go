package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// No Docker engine runs here, so this test runs the Dockerfile's own build steps — every RUN
// of the build stage, as written, with /out moved to a temporary directory — and checks what
// the runtime stage relies on: a static binary, the configuration checked at build time, a
// non-root user, port 8080.
func TestDockerfileBuildSteps(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], line)
		}
	}
	if len(stages) != 2 {
		t.Fatalf("Dockerfile has %d stages, want a build and a runtime stage", len(stages))
	}
	build, runtime := stages[0], stages[1]

	out := t.TempDir()
	var runs int
	for _, line := range build {
		cmd, ok := strings.CutPrefix(line, "RUN ")
		if !ok {
			continue
		}
		runs++
		cmd = strings.ReplaceAll(cmd, "/out/", out+"/")
		sh := exec.Command("sh", "-c", cmd)
		sh.Dir = "../.."
		if output, err := sh.CombinedOutput(); err != nil {
			t.Fatalf("RUN %s: %v\n%s", cmd, err, output)
		}
	}
	if runs < 3 {
		t.Fatalf("build stage has %d RUN steps, want download, build and check", runs)
	}
	if !strings.Contains(strings.Join(build, "\n"), "persona-router check") {
		t.Error("the build stage does not run persona-router check")
	}

	bin := filepath.Join(out, "persona-router")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a dynamic loader: it is not static and will not run on distroless/static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary links %v", libs)
	}

	// The check step fails the build for a bad configuration.
	bad := writeConfig(t, map[string]string{"personas/default.yaml": "name: [unclosed\n"})
	if err := exec.Command(bin, append([]string{"check"}, bad...)...).Run(); err == nil {
		t.Error("persona-router check passed a broken configuration; the image build would not fail")
	}

	text := strings.Join(runtime, "\n")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^USER nonroot`),
		regexp.MustCompile(`(?m)^EXPOSE 8080$`),
		regexp.MustCompile(`(?m)^COPY .*\brules /etc/persona-router/rules$`),
		regexp.MustCompile(`(?m)^COPY .*\bpersonas /etc/persona-router/personas$`),
		regexp.MustCompile(`(?m)^COPY --from=build /out/persona-router /persona-router$`),
		regexp.MustCompile(`RULES_DIR=/etc/persona-router/rules`),
		regexp.MustCompile(`PERSONAS_DIR=/etc/persona-router/personas`),
		regexp.MustCompile(`(?m)^ENTRYPOINT \["/persona-router"\]$`),
	} {
		if !want.MatchString(text) {
			t.Errorf("runtime stage lacks %s", want)
		}
	}
}
