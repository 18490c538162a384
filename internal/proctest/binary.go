package proctest

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	if !isExecutable(p) {
		t.Fatalf("%s is missing or not executable: run `make build` first (make test does)", p)
	}
	return p
}

// sbinDirs are where Debian installs daemons and their tools (haproxy,
// pgbouncer, runc): not on a non-root user's PATH.
var sbinDirs = []string{"/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"}

// LookPath finds the executable name on PATH or in the sbin directories.
func LookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range sbinDirs {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p, nil
		}
	}
	return "", errors.New(name + " not found on PATH nor in /usr/sbin")
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// FreePort returns a loopback TCP port that is free now. It is below
// Linux's ephemeral range (32768+), so that no outgoing connection takes it
// while a process that listened on it is down, to be started again there.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 200 {
		var b [2]byte
		_, _ = rand.Read(b[:])
		port := 20000 + int(binary.BigEndian.Uint16(b[:]))%12000
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free loopback port in 20000-31999")
	return 0
}
