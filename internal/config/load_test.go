package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
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
	secret := []byte("test-signing-secret-of-32-bytes!") // customer-support signs its webhook URL
	snap, err := config.Load(config.Dirs{Rules: "../../rules", Personas: "../../personas", SigningSecret: secret})
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

			dirs := dirsIn(root)
			dirs.SigningSecret = []byte("test-signing-secret-of-32-bytes!") // as a service would have
			snap, err := config.Load(dirs)
			got := errorLines(t, root, snap, err)
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
	res := snap.Decide(expression.Input{Context: "lab"}, false)
	if res.Persona != "default" || res.Rule != nil || res.Err != nil {
		t.Errorf("Decide = %s %v %v, want default with no rule", res.Persona, res.Rule, res.Err)
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

// write writes text into the file at rel under root, creating its directory.
func write(t *testing.T, root, rel, text string) {
	t.Helper()
	path := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// symlink makes rel under root a symbolic link to target.
func symlink(t *testing.T, root, rel, target string) {
	t.Helper()
	if err := os.Symlink(target, filepath.Join(root, rel)); err != nil {
		t.Fatal(err)
	}
}

// errorLines returns the errors of a failed load as "path:line:col: message", paths relative
// to root.
func errorLines(t *testing.T, root string, snap *config.Snapshot, err error) []string {
	t.Helper()
	if err == nil {
		t.Fatalf("Load succeeded (version %s), want errors", snap.Version)
	}
	if snap != nil {
		t.Errorf("Load returned a snapshot along with errors")
	}
	var got []string
	for _, e := range source.AsErrors(err) {
		rel, _ := filepath.Rel(root, e.Pos.Path)
		got = append(got, strings.Replace(e.Error(), e.Pos.Path, filepath.ToSlash(rel), 1))
	}
	return got
}

// aliasBomb is a 10,000-item list under an anchored rule test, then 12,000 aliases to that test:
// 104 KB that expand to 120 million nodes, the file that ran the service out of memory.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("tests:\n  - &t\n    name: t\n    request:\n      metadata:\n        big: [0")
	b.WriteString(strings.Repeat(",0", 9_999))
	b.WriteString("]\n    expect: {rule: null}\n")
	b.WriteString(strings.Repeat("  - *t\n", 12_000))
	return b.String()
}

// stringBomb is one 30,000-byte string and a list of 300 aliases to it: 9 MB of text once
// expanded, from a file of 31 KB.
func stringBomb() string {
	return "tests:\n  - name: t\n    request:\n      metadata:\n        s: &s " + strings.Repeat("x", 30_000) +
		"\n        l: [" + strings.TrimSuffix(strings.Repeat("*s, ", 300), ", ") + "]\n    expect: {rule: null}\n"
}

// manyEntries writes n flow-style entries made by entry, one a line, under key.
func manyEntries(key string, from, n int, entry func(i int) string) string {
	var b strings.Builder
	b.WriteString(key + ":\n")
	for i := from; i < from+n; i++ {
		b.WriteString("  - " + entry(i) + "\n")
	}
	return b.String()
}

func rule(i int) string { return fmt.Sprintf(`{name: r%d, when: "true", persona: default}`, i) }
func ruleTest(i int) string {
	return fmt.Sprintf(`{name: t%d, request: {context: x}, expect: {rule: null}}`, i)
}

// unknownKeys lists the errors about the unknown key xN of files rules/eNN.yaml, N < n.
func unknownKeys(n int) []string {
	var errs []string
	for i := range n {
		errs = append(errs, fmt.Sprintf(`rules/e%02d.yaml:1:1: unknown field "x%d" in rules file (expected one of: rules, tests, metadata, budgets)`, i, i))
	}
	return errs
}

// goodBytes is the size of every file of testdata/good.
func goodBytes(t *testing.T) int64 {
	t.Helper()
	var n int64
	for _, pattern := range []string{"testdata/good/*/*.yaml"} {
		paths, _ := filepath.Glob(pattern)
		for _, p := range paths {
			info, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			n += info.Size()
		}
	}
	return n
}

// TestLoadLimits lays each attack on a limit over testdata/good and checks that the load fails
// with exactly the errors listed, positioned where an author must look.
func TestLoadLimits(t *testing.T) {
	longPrompt := "name: Helper\navatarId: 30fa96d0-26c4-4e55-94a0-517025942e18\nvoiceId: 6bfbe25a-979d-40f3-a92b-5394170af54b\n" +
		"systemPrompt: " + strings.Repeat("x", source.MaxStringBytes+1) + "\n"
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, root string)
		want  []string
	}{
		{
			name:  "aliases to a 10,000-item list",
			setup: func(t *testing.T, root string) { write(t, root, "rules/b.yaml", aliasBomb()) },
			want:  []string{"rules/b.yaml:16:5: too large after expanding aliases (100133 nodes, limit 100000)"},
		},
		{
			name:  "aliases to a long string",
			setup: func(t *testing.T, root string) { write(t, root, "rules/b.yaml", stringBomb()) },
			want:  []string{"rules/b.yaml:6:1125: too large after expanding aliases (8400027 bytes of text, limit 8388608)"},
		},
		{
			name: "file over 1 MiB",
			setup: func(t *testing.T, root string) {
				write(t, root, "rules/big.yaml", "#"+strings.Repeat("x", source.MaxFileBytes-1)+"\n")
			},
			want: []string{"rules/big.yaml:1:1: file is too large (1048577 bytes, limit 1048576 bytes = 1 MiB)"},
		},
		{
			name:  "systemPrompt over 32 KiB",
			setup: func(t *testing.T, root string) { write(t, root, "personas/default.yaml", longPrompt) },
			want:  []string{"personas/default.yaml:4:15: value is too long (32769 bytes, limit 32768 bytes = 32 KiB)"},
		},
		{
			name: "when over 32 KiB",
			setup: func(t *testing.T, root string) {
				write(t, root, "rules/b.yaml", "rules:\n  - name: long\n    persona: default\n    when: \""+strings.Repeat(" ", source.MaxStringBytes)+"true\"\n")
			},
			want: []string{"rules/b.yaml:4:11: value is too long (32772 bytes, limit 32768 bytes = 32 KiB)"},
		},
		{
			name: "every limit error of a load is reported",
			setup: func(t *testing.T, root string) {
				write(t, root, "personas/default.yaml", longPrompt)
				write(t, root, "rules/b.yaml", aliasBomb())
			},
			want: []string{
				"personas/default.yaml:4:15: value is too long (32769 bytes, limit 32768 bytes = 32 KiB)",
				"rules/b.yaml:16:5: too large after expanding aliases (100133 nodes, limit 100000)",
			},
		},
		{
			name: "rules files too large together after expanding aliases",
			// a.yaml's 75 nodes, then 98,105 a file: the 11th goes over.
			setup: func(t *testing.T, root string) {
				for i := range 11 {
					write(t, root, fmt.Sprintf("rules/e%02d.yaml", i), fmt.Sprintf("x%d:\n  a: &a [1%s]\n  b: [*a%s]\n", i, strings.Repeat(",1", 999), strings.Repeat(",*a", 96)))
				}
			},
			want: append(unknownKeys(10), "rules/e10.yaml:1:1: configuration is too large after expanding aliases: with this file its rules files come to 1079230 nodes (limit 1000000)"),
		},
		{
			name: "rules files too long together after expanding aliases",
			// a.yaml's 580 bytes, then 7,830,004 a file: the 9th goes over.
			setup: func(t *testing.T, root string) {
				for i := range 9 {
					write(t, root, fmt.Sprintf("rules/e%02d.yaml", i), fmt.Sprintf("x%d:\n  a: &a %s\n  b: [*a%s]\n", i, strings.Repeat("y", 30_000), strings.Repeat(",*a", 259)))
				}
			},
			want: append(unknownKeys(8), "rules/e08.yaml:1:1: configuration is too large after expanding aliases: with this file its rules files come to 70470616 bytes of text (limit 67108864)"),
		},
		{
			name: "too many rules",
			setup: func(t *testing.T, root string) {
				write(t, root, "rules/0-many.yaml", manyEntries("rules", 0, source.MaxRules+1, rule))
			},
			want: []string{"rules/0-many.yaml:10002:5: too many rules: this is rule 10001 of the configuration (limit 10000)"},
		},
		{
			name: "too many rule tests across files",
			setup: func(t *testing.T, root string) {
				write(t, root, "rules/0-tests-1.yaml", manyEntries("tests", 0, source.MaxTests/2, ruleTest))
				write(t, root, "rules/0-tests-2.yaml", manyEntries("tests", source.MaxTests/2, source.MaxTests/2, ruleTest))
			},
			// a.yaml's first test is the configuration's 10,001st.
			want: []string{"rules/a.yaml:11:5: too many rule tests: this is rule test 10001 of the configuration (limit 10000)"},
		},
		{
			name: "too many rules files",
			setup: func(t *testing.T, root string) {
				for i := range source.MaxRuleFiles {
					write(t, root, fmt.Sprintf("rules/r%04d.yaml", i), "")
				}
			},
			want: []string{"rules:1:1: too many files: the rules directory holds 1001 YAML files (limit 1000)"},
		},
		{
			name: "too many personas",
			setup: func(t *testing.T, root string) {
				for i := range source.MaxPersonas - 2 {
					write(t, root, fmt.Sprintf("personas/p%04d.yaml", i), "extends: default\n")
				}
			},
			want: []string{"personas:1:1: too many files: the personas directory holds 1001 YAML files (limit 1000)"},
		},
		{
			name: "configuration over 32 MiB",
			setup: func(t *testing.T, root string) {
				for i := range 33 {
					write(t, root, fmt.Sprintf("rules/big-%02d.yaml", i), "#"+strings.Repeat("x", source.MaxFileBytes-2)+"\n")
				}
			},
			// Every file of testdata/good is read, then 31 of 1 MiB; the 32nd goes over.
			want: []string{fmt.Sprintf("rules:1:1: configuration is too large: with big-31.yaml its files come to %d bytes (limit 33554432 bytes = 32 MiB for both directories)",
				goodBytes(t)+32*source.MaxFileBytes)},
		},
		{
			name: "dangling and looping symbolic links",
			setup: func(t *testing.T, root string) {
				symlink(t, root, "personas/ghost.yaml", "nowhere.yaml")
				symlink(t, root, "rules/loop-a.yaml", "loop-b.yaml")
				symlink(t, root, "rules/loop-b.yaml", "loop-a.yaml")
			},
			want: []string{
				"personas/ghost.yaml:1:1: is a symbolic link to nowhere.yaml, which does not exist",
				"rules/loop-a.yaml:1:1: is a symbolic link to loop-b.yaml, which leads into a symbolic link loop",
				"rules/loop-b.yaml:1:1: is a symbolic link to loop-a.yaml, which leads into a symbolic link loop",
			},
		},
		{
			name: "dangling directory link",
			setup: func(t *testing.T, root string) {
				if err := os.RemoveAll(filepath.Join(root, "rules")); err != nil {
					t.Fatal(err)
				}
				symlink(t, root, "rules", "gone")
			},
			want: []string{"rules:1:1: rules directory is a symbolic link to gone, which does not exist"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			copyTree(t, "testdata/good", root)
			tc.setup(t, root)
			snap, err := config.Load(dirsIn(root))
			got := errorLines(t, root, snap, err)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestLoadAtLimits loads configurations that reach a limit without going over it, and
// configurations made of symbolic links as Kubernetes mounts a ConfigMap.
func TestLoadAtLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, root string)
	}{
		{
			name: "file of exactly 1 MiB",
			setup: func(t *testing.T, root string) {
				write(t, root, "rules/big.yaml", "#"+strings.Repeat("x", source.MaxFileBytes-2)+"\n")
			},
		},
		{
			name: "systemPrompt of exactly 32 KiB",
			setup: func(t *testing.T, root string) {
				write(t, root, "personas/long.yaml", "extends: default\nsystemPrompt: "+strings.Repeat("x", source.MaxStringBytes)+"\n")
			},
		},
		{
			name: "a prompt shared through aliases",
			setup: func(t *testing.T, root string) {
				write(t, root, "rules/b.yaml", "rules:\n"+
					"  - {name: b1, when: context == 'b1', persona: default, set: {systemPrompt: &p "+strings.Repeat("x", 30_000)+"}}\n"+
					"  - {name: b2, when: context == 'b2', persona: default, set: {systemPrompt: *p}}\n"+
					"  - {name: b3, when: context == 'b3', persona: default, set: {systemPrompt: *p}}\n")
			},
		},
		{
			name: "ConfigMap volume of symbolic links",
			setup: func(t *testing.T, root string) {
				for _, dir := range []string{"personas", "rules"} {
					versioned := filepath.Join(root, dir, "..2026_01_01_00_00_00.000000001")
					if err := os.Mkdir(versioned, 0o755); err != nil {
						t.Fatal(err)
					}
					names, _ := filepath.Glob(filepath.Join(root, dir, "*.yaml"))
					for _, path := range names {
						if err := os.Rename(path, filepath.Join(versioned, filepath.Base(path))); err != nil {
							t.Fatal(err)
						}
						symlink(t, root, filepath.Join(dir, filepath.Base(path)), filepath.Join("..data", filepath.Base(path)))
					}
					symlink(t, root, filepath.Join(dir, "..data"), filepath.Base(versioned))
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			copyTree(t, "testdata/good", root)
			tc.setup(t, root)
			if _, err := config.Load(dirsIn(root)); err != nil {
				t.Fatalf("Load: %v", err)
			}
		})
	}
}

// TestAliasBombsUseLittleMemory checks that a file of aliases is refused before it is
// expanded: loading it allocates about what loading the file itself does, not what it expands
// to (gigabytes).
func TestAliasBombsUseLittleMemory(t *testing.T) {
	laughs, err := os.ReadFile("testdata/bad/alias-billion-laughs/rules/b.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"list":           aliasBomb(),
		"string":         stringBomb(),
		"billion laughs": string(laughs),
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			copyTree(t, "testdata/good", root)
			write(t, root, "rules/b.yaml", text)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := config.Load(dirsIn(root))
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), "too large after expanding aliases") {
				t.Fatalf("Load = %v, want a file too large after expanding aliases", err)
			}
			const bound = 50 << 20
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("Load allocated %d KB", alloc>>10)
			if alloc > bound {
				t.Errorf("Load allocated %d MB, want under %d MB", alloc>>20, bound>>20)
			}
		})
	}
}

// TestLoadCapsErrors checks that a load with thousands of mistakes lists the first
// source.MaxErrors of them and says that there are more.
func TestLoadCapsErrors(t *testing.T) {
	root := t.TempDir()
	copyTree(t, "testdata/good", root)
	var b strings.Builder
	for i := range 3 * source.MaxErrors {
		fmt.Fprintf(&b, "k%d: 1\n", i)
	}
	write(t, root, "personas/child.yaml", b.String())
	snap, err := config.Load(dirsIn(root))
	got := errorLines(t, root, snap, err)
	if len(got) != source.MaxErrors+1 {
		t.Fatalf("got %d errors, want %d and one saying there are more", len(got), source.MaxErrors+1)
	}
	if want := `personas/child.yaml:1:1: unknown field "k0" in persona`; !strings.HasPrefix(got[0], want) {
		t.Errorf("first error %s, want %s…", got[0], want)
	}
	if want := "personas:1:1: too many errors: only the first 1000 are listed; fix them and load again to see the rest"; got[source.MaxErrors] != want {
		t.Errorf("last error %s, want %s", got[source.MaxErrors], want)
	}
}
