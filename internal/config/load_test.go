package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/persona-router/persona-router/internal/config"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/source"
)

// copyTree copies the files of src into dst, creating directories as needed.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func dirsIn(root string) config.Dirs {
	return config.Dirs{Rules: filepath.Join(root, "rules"), Personas: filepath.Join(root, "personas")}
}

func TestLoadGood(t *testing.T) {
	snap, err := config.Load(dirsIn("testdata/good"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, want := strings.Join(snap.PersonaIDs(), ","), "child,default,stateful"; got != want {
		t.Errorf("personas = %s, want %s", got, want)
	}
	if snap.Tests() != 3 || len(snap.Rules()) != 2 || len(snap.Uncovered()) != 0 {
		t.Errorf("tests=%d rules=%d uncovered=%d, want 3, 2, 0", snap.Tests(), len(snap.Rules()), len(snap.Uncovered()))
	}
	if len(snap.Version) != 12 {
		t.Errorf("version %q is not 12 hex digits", snap.Version)
	}
}

func TestLoadShippedConfig(t *testing.T) {
	snap, err := config.Load(config.Dirs{Rules: "../../rules", Personas: "../../personas"})
	if err != nil {
		t.Fatalf("the shipped configuration does not load:\n%v", err)
	}
	for _, id := range []string{"default", "customer-support", "sales", "training"} {
		if !slices.Contains(snap.PersonaIDs(), id) {
			t.Errorf("shipped personas lack %q", id)
		}
	}
	if len(snap.Uncovered()) > 0 {
		t.Errorf("shipped rules without a test: %v", snap.Uncovered())
	}
}

// TestLoadBad loads testdata/good with each testdata/bad/<case> laid over it and checks that
// the load fails with exactly the errors its want.txt lists: one per line, as
// "path:line:col: message prefix". A want.txt line "-path" deletes that file from the base.
func TestLoadBad(t *testing.T) {
	cases, err := os.ReadDir("testdata/bad")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name(), func(t *testing.T) {
			caseDir := filepath.Join("testdata/bad", c.Name())
			root := t.TempDir()
			copyTree(t, "testdata/good", root)
			copyTree(t, caseDir, root)
			if err := os.Remove(filepath.Join(root, "want.txt")); err != nil {
				t.Fatal(err)
			}
			wantText, err := os.ReadFile(filepath.Join(caseDir, "want.txt"))
			if err != nil {
				t.Fatal(err)
			}
			var wants []string
			for _, line := range strings.Split(strings.TrimSpace(string(wantText)), "\n") {
				if del, ok := strings.CutPrefix(line, "-"); ok {
					if err := os.Remove(filepath.Join(root, del)); err != nil {
						t.Fatal(err)
					}
					continue
				}
				wants = append(wants, line)
			}

			snap, err := config.Load(dirsIn(root))
			if err == nil {
				t.Fatalf("Load succeeded (version %s), want errors:\n%s", snap.Version, strings.Join(wants, "\n"))
			}
			if snap != nil {
				t.Errorf("Load returned a snapshot along with errors")
			}
			var got []string
			for _, e := range source.AsErrors(err) {
				rel, _ := filepath.Rel(root, e.Pos.Path)
				got = append(got, strings.Replace(e.Error(), e.Pos.Path, filepath.ToSlash(rel), 1))
			}
			if len(got) != len(wants) {
				t.Fatalf("got %d errors, want %d:\ngot:\n%s\nwant:\n%s", len(got), len(wants), strings.Join(got, "\n"), strings.Join(wants, "\n"))
			}
			for i, want := range wants {
				if !strings.HasPrefix(got[i], want) {
					t.Errorf("error %d:\n got: %s\nwant: %s…", i, got[i], want)
				}
			}
		})
	}
}

func TestLoadMissingDirectory(t *testing.T) {
	root := t.TempDir()
	copyTree(t, "testdata/good", root)
	if err := os.RemoveAll(filepath.Join(root, "rules")); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(dirsIn(root))
	if err == nil || !strings.Contains(err.Error(), "rules directory does not exist") {
		t.Fatalf("Load = %v, want a missing rules directory error", err)
	}
}

func TestLoadIgnoresHiddenAndBackupFiles(t *testing.T) {
	root := t.TempDir()
	copyTree(t, "testdata/good", root)
	junk := map[string]string{
		"rules/.a.yaml.swp":     "not: [yaml",
		"rules/a.yaml~":         "not: [yaml",
		"rules/.#a.yaml":        "not: [yaml",
		"rules/notes.txt":       "not: [yaml",
		"personas/.hidden.yaml": "not: [yaml",
	}
	for name, text := range junk {
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "rules", "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	before, err := config.Load(dirsIn("testdata/good"))
	if err != nil {
		t.Fatal(err)
	}
	after, err := config.Load(dirsIn(root))
	if err != nil {
		t.Fatalf("Load read a file it should ignore: %v", err)
	}
	if before.Version != after.Version {
		t.Errorf("version changed from %s to %s: ignored files must not count", before.Version, after.Version)
	}
}

func TestLoadEmptyRulesDirectoryRoutesToDefault(t *testing.T) {
	root := t.TempDir()
	copyTree(t, "testdata/good", root)
	if err := os.Remove(filepath.Join(root, "rules", "a.yaml")); err != nil {
		t.Fatal(err)
	}
	snap, err := config.Load(dirsIn(root))
	if err != nil {
		t.Fatal(err)
	}
	res := snap.Resolve(expression.Input{Context: "lab"}, false)
	if res.Persona != "default" || res.Rule != nil || res.Err != nil {
		t.Errorf("Resolve = %s %v %v, want default with no rule", res.Persona, res.Rule, res.Err)
	}
}

func TestVersionFollowsContent(t *testing.T) {
	root := t.TempDir()
	copyTree(t, "testdata/good", root)
	a, err := config.Load(dirsIn(root))
	if err != nil {
		t.Fatal(err)
	}
	b, err := config.Load(dirsIn(root))
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != b.Version {
		t.Errorf("same files, versions %s and %s", a.Version, b.Version)
	}
	path := filepath.Join(root, "personas", "default.yaml")
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append(data, []byte("languageCode: fr\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(dirsIn(root))
	if err != nil {
		t.Fatal(err)
	}
	if c.Version == a.Version {
		t.Errorf("edited persona, version stayed %s", a.Version)
	}
}
