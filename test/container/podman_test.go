//go:build container

package container

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/acme/usersd/internal/proctest"
)

// podman runs podman on a storage of its own in a temp directory (images,
// containers, runtime state, network configuration), removed when the test
// ends, so that runs share nothing with each other or with the machine's
// podman.
type podman struct {
	dir  string
	bin  string
	args []string // global flags
	env  []string
}

// newPodman finds podman and runc and sets up the private storage.
func newPodman(t *testing.T) *podman {
	t.Helper()
	bin, err := proctest.LookPath("podman")
	if err != nil {
		t.Fatal("podman is not installed: scripts/test-container.sh installs it (apt-get install podman runc)")
	}
	if _, err := proctest.LookPath("runc"); err != nil {
		t.Fatal("runc is not installed: scripts/test-container.sh installs it (apt-get install runc)")
	}
	// A short path: conmon's attach socket lives under it, and unix socket
	// paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "ucp-")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"tmp", "net"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	p := &podman{
		dir: dir,
		bin: bin,
		args: []string{
			"--root", filepath.Join(dir, "root"),
			"--runroot", filepath.Join(dir, "run"),
			"--tmpdir", filepath.Join(dir, "tmp"),
			"--network-config-dir", filepath.Join(dir, "net"),
			"--events-backend", "none",
			// vfs: no overlay mounts, which need a kernel and filesystem
			// that allow them; runc: crun refuses hybrid cgroup hierarchies.
			"--storage-driver", "vfs",
			"--runtime", "runc",
			"--cgroup-manager", "cgroupfs",
		},
		// The image copy on load extracts into TMPDIR (default /var/tmp).
		env: append(os.Environ(), "TMPDIR="+filepath.Join(dir, "tmp")),
	}
	t.Cleanup(func() { p.remove(t) })
	return p
}

// remove deletes every container and the storage directory; a mount left
// under it is unmounted first.
func (p *podman) remove(t *testing.T) {
	if out, err := p.exec(2*time.Minute, "rm", "--all", "--force", "--time", "0"); err != nil {
		t.Errorf("podman rm --all: %v\n%s", err, out)
	}
	mounts, err := mountsUnder(p.dir)
	if err != nil {
		t.Error(err)
	}
	for _, m := range mounts {
		t.Errorf("podman left %s mounted; unmounting it", m)
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", m, err)
		}
	}
	if err := os.RemoveAll(p.dir); err != nil {
		t.Errorf("remove podman storage %s: %v", p.dir, err)
	}
}

// mountsUnder lists the mount points below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			ms = append([]string{fields[4]}, ms...)
		}
	}
	return ms, sc.Err()
}

// exec runs podman with args and returns its combined output. podman run
// -d leaves conmon running on purpose; should it hold the output open,
// proctest stops reading it a little after podman has exited.
func (p *podman) exec(timeout time.Duration, args ...string) (string, error) {
	return proctest.Exec(proctest.Command{Path: p.bin, Args: append(slices.Clone(p.args), args...), Env: p.env}, timeout)
}

// must runs podman with args, failing the test when it fails, and returns
// its output without the trailing newline.
func (p *podman) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.exec(2*time.Minute, args...)
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimRight(out, "\n")
}
