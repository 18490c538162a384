//go:build container

// Package container runs the usersd container image (bin/usersd-image.tar,
// written by `make image`) with podman against a real PostgreSQL and a real
// OpenID issuer, and checks what the image promises: it runs as nonroot
// (65532), migrates, serves with authentication, answers its healthcheck and
// exits 0 on SIGTERM.
//
// Run it with `make test-container` (scripts/test-container.sh), which builds
// the image, provides TEST_DATABASE_URL and installs podman and runc when
// they are missing. It needs root (rootful podman).
package container

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/internal/devissuer"
	"github.com/acme/usersd/internal/proctest"
)

const (
	nonroot  = "65532"
	audience = "usersd"
	// maxImageSize bounds the image as shipped (compressed layers).
	maxImageSize = 30_000_000
)

// podmanRun are the flags every `podman run` needs on the test machines:
// nofile and nproc within the process's hard limits (podman's default nofile,
// 1048576, is above the CI VM's 20000, and runc then fails to start the
// container), and the host network to reach the issuer and PostgreSQL on
// loopback.
var podmanRun = []string{"--network", "host", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}

func TestImage(t *testing.T) {
	start := time.Now()
	archive := imageArchive(t)
	imageID := archiveImageID(t, archive)
	pm := newPodman(t)

	// Load: the archive's image, under its name.
	out := pm.must(t, "load", "--input", archive)
	if !strings.Contains(out, "usersd:latest") {
		t.Errorf("podman load did not name the image usersd:latest:\n%s", out)
	}
	img := inspectImage(t, pm, imageID)
	checkImageConfig(t, img)
	if fi, err := os.Stat(archive); err != nil {
		t.Fatal(err)
	} else if fi.Size() > maxImageSize {
		t.Errorf("the image archive (compressed layers) is %d bytes, over %d", fi.Size(), maxImageSize)
	} else {
		t.Logf("image %.12s: %.2f MB compressed (archive), %.2f MB uncompressed", imageID, float64(fi.Size())/1e6, float64(img.Size)/1e6)
	}
	checkImageFiles(t, pm, imageID)

	// Run it against a fresh database and a development issuer on the host.
	db := dbtest.Empty(t, "usersd_container")
	iss := devissuer.StartTest(t, audience, "RS256")
	bind := "127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	base := "http://" + bind
	args := append([]string{"run", "--detach", "--name", "usersd-container-test"}, podmanRun...)
	args = append(args,
		// Should the test process die without its cleanups (a go test
		// timeout, Ctrl-C), the container still ends.
		"--timeout", "240",
		"--env", "DATABASE_URL="+db.URL,
		"--env", "AUTH_ISSUER="+iss.URL(),
		"--env", "AUTH_AUDIENCE="+audience,
		"--env", "BIND="+bind,
		"--env", "LOG_FORMAT=json",
	)
	if dir := db.Config.Host; strings.HasPrefix(dir, "/") {
		// PostgreSQL's unix socket: the directory, read-only, at the same path.
		args = append(args, "--volume", dir+":"+dir+":ro")
	}
	ctr := pm.must(t, append(args, imageID)...)
	// Cleanups run last first: the logs, then the container goes, then the
	// issuer and the database.
	t.Cleanup(func() {
		if out, err := pm.exec(time.Minute, "rm", "--force", "--time", "0", ctr); err != nil {
			t.Errorf("podman rm %s: %v\n%s", ctr, err, out)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := pm.exec(time.Minute, "logs", ctr)
			t.Logf("container logs:\n%s", logs)
		}
	})
	waitHealthy(t, pm, ctr, base)

	// Who runs it: uid and gid 65532, no capabilities.
	checkProcess(t, pm, ctr)

	// It migrated the fresh database (every migration, from the log and
	// from the version table).
	logs := pm.must(t, "logs", ctr)
	checkMigrated(t, logs, db.URL)

	// Real authentication: no token is refused; a token from the issuer
	// creates a user and reads it back.
	checkAPI(t, base, iss)

	// The binary's own healthcheck, inside the container (BIND from its env).
	if out, err := pm.exec(time.Minute, "exec", ctr, "/usersd", "healthcheck"); err != nil {
		t.Errorf("podman exec %s /usersd healthcheck: %v\n%s", ctr, err, out)
	}
	if v := pm.must(t, "exec", ctr, "/usersd", "version"); v != "usersd "+img.Labels["org.opencontainers.image.version"] {
		t.Errorf("usersd version in the container says %q; the image's version label is %q", v, img.Labels["org.opencontainers.image.version"])
	}

	// SIGTERM: a graceful shutdown, exit code 0, well within the timeout.
	stopStart := time.Now()
	pm.must(t, "stop", "--time", "20", ctr)
	if d := time.Since(stopStart); d > 15*time.Second {
		t.Errorf("podman stop took %s: usersd did not exit promptly on SIGTERM", d.Round(time.Millisecond))
	}
	if code := pm.must(t, "inspect", "--format", "{{.State.ExitCode}}", ctr); code != "0" {
		t.Errorf("the container exited with code %s after SIGTERM, want 0", code)
	}
	logs = pm.must(t, "logs", ctr)
	if !strings.Contains(logs, `"msg":"shutdown complete"`) {
		t.Errorf("the log has no \"shutdown complete\" line")
	}
	if strings.Contains(logs, "panic") {
		t.Errorf("usersd logged a panic")
	}
	t.Logf("container test took %s", time.Since(start).Round(time.Millisecond))
}

// imageArchive is bin/usersd-image.tar (USERSD_IMAGE_ARCHIVE overrides it).
func imageArchive(t *testing.T) string {
	t.Helper()
	p := os.Getenv("USERSD_IMAGE_ARCHIVE")
	if p == "" {
		p = filepath.Join(proctest.RepoRoot(t), "bin", "usersd-image.tar")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%v: run `make image` first (make test-container does it)", err)
	}
	return p
}

// archiveImageID is the image id (config digest, hex) the archive's Docker
// manifest.json names, so that the test runs exactly the image it was given.
func archiveImageID(t *testing.T, archive string) string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("%s has no manifest.json", archive)
		}
		if err != nil {
			t.Fatalf("read %s: %v", archive, err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var m []struct{ Config string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil || len(m) != 1 {
			t.Fatalf("%s: manifest.json: want one image (%v)", archive, err)
		}
		id, ok := strings.CutPrefix(m[0].Config, "blobs/sha256/")
		if !ok {
			t.Fatalf("%s: unexpected config path %q", archive, m[0].Config)
		}
		return id
	}
}

type imageInfo struct {
	ID           string `json:"Id"`
	Architecture string
	Os           string
	Size         int64
	Config       struct {
		User         string
		Entrypoint   []string
		Cmd          []string
		Env          []string
		WorkingDir   string
		ExposedPorts map[string]struct{}
		Labels       map[string]string
	}
	Labels map[string]string
}

func inspectImage(t *testing.T, pm *podman, id string) imageInfo {
	t.Helper()
	var imgs []imageInfo
	if err := json.Unmarshal([]byte(pm.must(t, "image", "inspect", id)), &imgs); err != nil || len(imgs) != 1 {
		t.Fatalf("podman image inspect %s: %v", id, err)
	}
	img := imgs[0]
	if img.ID != id {
		t.Fatalf("podman loaded image %s, want %s", img.ID, id)
	}
	if img.Labels == nil {
		img.Labels = img.Config.Labels
	}
	return img
}

// checkImageConfig checks the run-time configuration the image promises.
func checkImageConfig(t *testing.T, img imageInfo) {
	t.Helper()
	c := img.Config
	if c.User != nonroot+":"+nonroot {
		t.Errorf("image user %q, want %s:%s", c.User, nonroot, nonroot)
	}
	if strings.Join(c.Entrypoint, " ") != "/usersd" || len(c.Cmd) != 0 {
		t.Errorf("image entrypoint %q cmd %q, want [/usersd] and none", c.Entrypoint, c.Cmd)
	}
	if _, ok := c.ExposedPorts["8000/tcp"]; !ok {
		t.Errorf("image exposes %v, want 8000/tcp", c.ExposedPorts)
	}
	if c.WorkingDir != "/" {
		t.Errorf("image working directory %q, want /", c.WorkingDir)
	}
	if img.Os != "linux" || img.Architecture == "" {
		t.Errorf("image platform %s/%s", img.Os, img.Architecture)
	}
	for _, k := range []string{"title", "description", "source", "licenses", "version", "revision", "created"} {
		if img.Labels["org.opencontainers.image."+k] == "" {
			t.Errorf("image has no org.opencontainers.image.%s label", k)
		}
	}
}

// checkImageFiles looks into the image's file system: the nonroot user,
// the CA certificates, a writable /tmp, the binary and nothing else.
func checkImageFiles(t *testing.T, pm *podman, id string) {
	t.Helper()
	root := pm.must(t, "image", "mount", id)
	defer pm.exec(time.Minute, "image", "unmount", id)
	passwd, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	if err != nil || !strings.Contains(string(passwd), "nonroot:x:65532:65532:nonroot:/home/nonroot:") {
		t.Errorf("/etc/passwd has no nonroot 65532 entry (%v):\n%s", err, passwd)
	}
	group, err := os.ReadFile(filepath.Join(root, "etc", "group"))
	if err != nil || !strings.Contains(string(group), "nonroot:x:65532:") {
		t.Errorf("/etc/group has no nonroot 65532 entry (%v):\n%s", err, group)
	}
	if fi, err := os.Stat(filepath.Join(root, "etc", "ssl", "certs", "ca-certificates.crt")); err != nil || fi.Size() < 10_000 {
		t.Errorf("no CA certificates at /etc/ssl/certs/ca-certificates.crt (%v)", err)
	}
	if fi, err := os.Stat(filepath.Join(root, "tmp")); err != nil || fi.Mode()&(os.ModePerm|os.ModeSticky) != 0o777|os.ModeSticky {
		t.Errorf("/tmp is not a directory with mode 1777 (%v %v)", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(root, "home", "nonroot")); err != nil || !fi.IsDir() {
		t.Errorf("/home/nonroot is not a directory (%v)", err)
	} else if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65532 || st.Gid != 65532 {
		t.Errorf("/home/nonroot is owned by %d:%d, want %s:%s", st.Uid, st.Gid, nonroot, nonroot)
	}
	if fi, err := os.Stat(filepath.Join(root, "usersd")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("/usersd is missing or not executable (%v)", err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "etc home tmp usersd" {
		t.Errorf("the image's / holds %q, want etc home tmp usersd", got)
	}
}

// waitHealthy waits for /healthz to answer 200, failing fast when the
// container stops.
func waitHealthy(t *testing.T, pm *podman, ctr, base string) {
	t.Helper()
	running := func() error {
		if state := pm.must(t, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", ctr); !strings.HasPrefix(state, "running") {
			return fmt.Errorf("the container is %s before /healthz answered 200", state)
		}
		return nil
	}
	if err := proctest.WaitOK(base+"/healthz", 60*time.Second, running); err != nil {
		t.Fatal(err)
	}
}

// checkProcess checks the container's process on the host: its real,
// effective, saved and file-system uids and gids are 65532, its only
// supplementary group is its own (podman adds it) and it has no capabilities.
func checkProcess(t *testing.T, pm *podman, ctr string) {
	t.Helper()
	pid := pm.must(t, "inspect", "--format", "{{.State.Pid}}", ctr)
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatalf("the container's process %s: %v", pid, err)
	}
	want := map[string]string{
		"Uid":    strings.Repeat(nonroot+" ", 4),
		"Gid":    strings.Repeat(nonroot+" ", 4),
		"Groups": nonroot,
		"CapEff": "0000000000000000 ",
		"CapPrm": "0000000000000000 ",
		"Name":   "usersd ",
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		if w, ok := want[k]; ok {
			if got := strings.Join(strings.Fields(v), " ") + " "; strings.TrimSpace(got) != strings.TrimSpace(w) {
				t.Errorf("/proc/%s/status %s: %q, want %q", pid, k, strings.TrimSpace(got), strings.TrimSpace(w))
			}
			delete(want, k)
		}
	}
	for k := range want {
		t.Errorf("/proc/%s/status has no %s line", pid, k)
	}
	// podman's own view: the user by name (the image's passwd) and on the host.
	top := pm.must(t, "top", ctr, "user", "huser")
	if lines := strings.Split(top, "\n"); len(lines) != 2 || strings.Join(strings.Fields(lines[1]), " ") != "nonroot "+nonroot {
		t.Errorf("podman top %s user huser:\n%s\nwant one process of nonroot, %s on the host", ctr, top, nonroot)
	}
}

var migrationFile = regexp.MustCompile(`^\d+_.*\.sql$`)

// checkMigrated checks that usersd applied every migration to the empty
// database at dbURL: the log names each, and the version table has the last.
func checkMigrated(t *testing.T, logs, dbURL string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(proctest.RepoRoot(t), "migrations"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if migrationFile.MatchString(e.Name()) {
			n++
		}
	}
	if got := strings.Count(logs, `"msg":"applying migration"`); got != n || n == 0 {
		t.Errorf("the log has %d \"applying migration\" lines; migrations/ has %d", got, n)
	}
	if !strings.Contains(logs, `"msg":"applied river migration"`) {
		t.Errorf("the log has no \"applied river migration\" line")
	}
	conn := dbtest.Connect(t, dbURL)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var version int
	if err := conn.QueryRow(ctx, "SELECT max(version) FROM public.schema_version").Scan(&version); err != nil {
		t.Errorf("schema_version: %v", err)
	} else if version != n {
		t.Errorf("schema_version is at %d, want %d", version, n)
	}
	var riverJobs bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('public.river_job') IS NOT NULL").Scan(&riverJobs); err != nil || !riverJobs {
		t.Errorf("no river_job table (%v)", err)
	}
}

// checkAPI creates a user with a token and reads it back over REST.
func checkAPI(t *testing.T, base string, iss *devissuer.Issuer) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	if status, body := call(t, c, http.MethodGet, base+"/users", "", nil); status != http.StatusUnauthorized {
		t.Errorf("GET /users without a token: %d %s, want 401", status, body)
	}

	token := iss.Token("container-test", "users:read", "users:write")
	email := fmt.Sprintf("container-%d@example.com", time.Now().UnixNano())
	reqBody, _ := json.Marshal(map[string]string{"email": email, "full_name": "Container Test"})
	// usersd loads the issuer's keys in the background: until then,
	// authenticated calls answer 503.
	deadline := time.Now().Add(30 * time.Second)
	var status int
	var body []byte
	for {
		status, body = call(t, c, http.MethodPost, base+"/users", token, reqBody)
		if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if status != http.StatusCreated {
		t.Fatalf("POST /users: %d %s, want 201", status, body)
	}
	var created struct{ ID, Email string }
	if err := json.Unmarshal(body, &created); err != nil || created.ID == "" {
		t.Fatalf("POST /users: undecodable user %s (%v)", body, err)
	}
	status, body = call(t, c, http.MethodGet, base+"/users/"+created.ID, token, nil)
	var got struct{ ID, Email string }
	if status != http.StatusOK || json.Unmarshal(body, &got) != nil || got.ID != created.ID || got.Email != email {
		t.Errorf("GET /users/%s: %d %s, want 200 and the user just created (%s)", created.ID, status, body, email)
	}
}

func call(t *testing.T, c *http.Client, method, url, token string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, b
}
