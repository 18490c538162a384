package proctest

import (
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot is the root of the module the test runs in: the nearest
// directory above the test's working directory that holds go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's working directory")
		}
		dir = parent
	}
}

// Binary is bin/usersd, the release build `make build` writes; USERSD_BIN
// overrides it (for example to check that a suite catches a broken build).
// The test fails when it is not an executable file.
func Binary(t testing.TB) string {
	t.Helper()
	p := os.Getenv("USERSD_BIN")
	if p == "" {
		p = filepath.Join(RepoRoot(t), "bin", "usersd")
	}
	if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("%s is missing or not executable: run `make build` first (make test does)", p)
	}
	return p
}
