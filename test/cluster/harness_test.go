//go:build cluster

// Package cluster runs usersd as it is deployed with more than one replica:
// three usersd processes (bin/usersd) behind HAProxy, which serves HTTP/1.1
// and h2c on one port and health-checks /healthz every second, all of them
// querying one PostgreSQL through PgBouncer in transaction pooling, with the
// configurations of deploy/haproxy and deploy/pgbouncer. It checks that
// replicas starting together on an empty database migrate it once, that a
// rolling restart under load fails no request, that kill -9 of a replica
// fails only the requests it was handling, and that every user created
// meanwhile gets exactly one welcome job and one welcome mail.
//
// Run it with `make test-cluster` (scripts/test-cluster.sh), which builds the
// binary, provides TEST_DATABASE_URL and installs haproxy and pgbouncer when
// they are missing.
package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"

	"github.com/acme/usersd/internal/devissuer"
	"github.com/acme/usersd/internal/proctest"
	"github.com/acme/usersd/internal/smtptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	audience = "usersd"
	// shutdownDrain is the replicas' SHUTDOWN_DRAIN: longer than HAProxy needs
	// to take a replica whose readiness turned 503 out of rotation (at most
	// inter 1s + fastinter 500ms, deploy/haproxy/haproxy.cfg), with margin for
	// a loaded 2-core machine.
	shutdownDrain   = 4 * time.Second
	shutdownTimeout = 15 * time.Second
	// dbMaxConns is each replica's DB_MAX_CONNS (usersd's default): three
	// replicas open up to 60 client connections to PgBouncer, which runs them
	// on its default_pool_size (20) server connections.
	dbMaxConns = 20
)

// tool finds haproxy or pgbouncer: on PATH, or in /usr/sbin where Debian
// puts them (not on a non-root user's PATH).
func tool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := filepath.Join("/usr/sbin", name); isExecutable(p) {
		return p
	}
	t.Fatalf("%s not found: run the suite with `make test-cluster`, which installs it (apt-get install haproxy pgbouncer)", name)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// freePort returns a loopback TCP port that is free now, below Linux's
// ephemeral range (32768+), so that no outgoing connection takes it while a
// killed replica's port waits for its restart.
func freePort(t testing.TB) int {
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
	t.Fatal("no free loopback port in 20000-32767")
	return 0
}

// Processes.

// line is one line of a process's output, stamped when it arrived.
type line struct {
	at   time.Time
	text string
}

// lineLog collects a process's output line by line, with arrival times:
// HAProxy's state changes carry no time of their own.
type lineLog struct {
	mu      sync.Mutex
	partial []byte
	lines   []line
}

func (l *lineLog) Write(b []byte) (int, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, line{at: now, text: string(l.partial[:i])})
		l.partial = l.partial[i+1:]
	}
	return len(b), nil
}

// Lines returns the complete lines so far.
func (l *lineLog) Lines() []line {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

// Tail is the last n lines, for failure logs.
func (l *lineLog) Tail(n int) string {
	lines := l.Lines()
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, ln := range lines {
		b.WriteString(ln.text)
		b.WriteByte('\n')
	}
	return b.String()
}

// proc is one child process of the test.
type proc struct {
	name    string
	cmd     *exec.Cmd
	out     *lineLog
	done    chan struct{} // closed once it has exited and its output is complete
	started time.Time
	exitAt  time.Time // when the test saw it exit (its sockets closed by then); valid once done
}

// startProc starts cmd with its output collected. The process gets SIGKILL
// if the test binary dies (a timeout's panic), so none is left behind.
//
// Its stdout and stderr are one pipe of 1 MiB, read continuously: HAProxy
// writes its log to stdout without blocking and drops lines the pipe cannot
// take at once (its DroppedLogs counter), and the suite needs every line.
func startProc(t testing.TB, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, out: &lineLog{}, done: make(chan struct{})}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	const fSetPipeSize = 1031 // F_SETPIPE_SZ (Linux); not in package syscall
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, w.Fd(), fSetPipeSize, 1<<20); errno != 0 {
		t.Logf("%s: cannot enlarge its output pipe: %v", name, errno)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	p.started = time.Now()
	err = cmd.Start()
	w.Close() // the child has its own copy
	if err != nil {
		r.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(p.out, r)
		r.Close()
		close(copied)
	}()
	go func() {
		_ = cmd.Wait()
		p.exitAt = time.Now()
		<-copied
		close(p.done)
	}()
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to exit and returns its exit code (-1
// when a signal ended it).
func (p *proc) wait(d time.Duration) (code int, exited bool) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return 0, false
	}
}

func (p *proc) signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// stop sends sig and waits up to d, then kills. It reports whether the
// process exited by itself in time.
func (p *proc) stop(sig syscall.Signal, d time.Duration) bool {
	if p.exited() {
		return true
	}
	_ = p.signal(sig)
	if _, ok := p.wait(d); ok {
		return true
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return false
}

// The cluster.

// cluster is everything the suite runs: a fresh database, PgBouncer,
// HAProxy, an SMTP sink, an OpenID issuer and three usersd replicas.
type cluster struct {
	t          *testing.T
	dir        string // configs and sockets, readable by PgBouncer's user
	dbName     string
	directURL  string // the test database, straight to PostgreSQL
	bouncerURL string // the same through PgBouncer, as the replicas use it
	adminURL   string // PgBouncer's console database
	smtp       *smtptest.Server
	issuer     *devissuer.Issuer
	token      string
	bouncer    *proc
	haproxy    *haproxy
	replicas   []*replica
	usersdEnv  map[string]string
	usersdBin  string
	usersdDir  string // the replicas' working directory, empty
}

// newCluster starts PgBouncer and HAProxy in front of a new, empty database,
// and prepares (but does not start) three replicas. Everything is stopped and
// removed when the test ends.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{t: t, usersdBin: proctest.Binary(t)}
	haproxyBin, bouncerBin := tool(t, "haproxy"), tool(t, "pgbouncer")

	dir, err := os.MkdirTemp("", "usersd-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	// PgBouncer may run as another user (it refuses root): let it read.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.dir = dir
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	c.usersdDir = filepath.Join(dir, "usersd")
	if err := os.Mkdir(c.usersdDir, 0o755); err != nil {
		t.Fatal(err)
	}

	base, password := c.createDatabase()
	c.smtp = smtptest.New(t)
	c.issuer = devissuer.StartTest(t, audience, "RS256")
	c.token = c.issuer.Token("cluster-test", "users:read", "users:write")

	c.startPgBouncer(bouncerBin, base, password)
	c.startHAProxy(haproxyBin)

	c.usersdEnv = map[string]string{
		"HOME":                 os.Getenv("HOME"),
		"DATABASE_URL":         c.bouncerURL + "&default_query_exec_mode=exec",
		"MIGRATE_DATABASE_URL": c.directURL,
		"RIVER_POLL_ONLY":      "true",
		"RIVER_WORKERS":        "4",
		"DB_MAX_CONNS":         strconv.Itoa(dbMaxConns),
		"SHUTDOWN_DRAIN":       shutdownDrain.String(),
		"SHUTDOWN_TIMEOUT":     shutdownTimeout.String(),
		"SMTP_URL":             "smtp://" + c.smtp.Addr,
		"AUTH_ISSUER":          c.issuer.URL(),
		"AUTH_AUDIENCE":        audience,
		// Rate limits off, on purpose: all of the suite's load comes from one
		// client with one token through one HAProxy address, so per-subject
		// and per-IP buckets would throttle the test itself, not an abuser.
		"RATE_LIMIT_RPS":    "0",
		"RATE_LIMIT_IP_RPS": "0",
		// HAProxy connects from loopback and adds X-Forwarded-For.
		"TRUSTED_PROXIES": "127.0.0.1",
	}
	for i := range c.haproxy.servers {
		c.replicas = append(c.replicas, &replica{c: c, name: c.haproxy.servers[i].name, addr: c.haproxy.servers[i].addr})
	}
	// Last registered, first run: the replicas stop before HAProxy and
	// PgBouncer, all at once (each drains for SHUTDOWN_DRAIN).
	t.Cleanup(c.stopReplicas)
	return c
}

// createDatabase creates an empty database for the run on TEST_DATABASE_URL's
// server and sets directURL. It returns the parsed server connection and the
// password clients will use with PgBouncer (TEST_DATABASE_URL's, or a new
// one when it has none: the throwaway cluster trusts local connections).
func (c *cluster) createDatabase() (*pgconn.Config, string) {
	t := c.t
	raw := os.Getenv("TEST_DATABASE_URL")
	if raw == "" {
		t.Fatal("TEST_DATABASE_URL is not set: run the suite with `make test-cluster`, which starts a throwaway PostgreSQL")
	}
	base, err := pgconn.ParseConfig(raw)
	if err != nil {
		t.Fatalf("parse TEST_DATABASE_URL: %v", err)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("TEST_DATABASE_URL must be a postgres:// URL (%v)", err)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	c.dbName = "usersd_cluster_" + hex.EncodeToString(rnd[:])

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, raw)
	if err != nil {
		t.Fatalf("connect to TEST_DATABASE_URL: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+c.dbName); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("database %s kept for inspection", c.dbName)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, raw)
		if err != nil {
			t.Errorf("drop database: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+c.dbName+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", c.dbName, err)
		}
	})
	u.Path = "/" + c.dbName
	c.directURL = u.String()

	password := base.Password
	if password == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		password = hex.EncodeToString(b[:])
	}
	return base, password
}

// startPgBouncer renders deploy/pgbouncer/pgbouncer.ini for this run and
// starts PgBouncer on a free loopback port, as the postgres OS user when the
// test runs as root (PgBouncer refuses to run as root).
func (c *cluster) startPgBouncer(bin string, base *pgconn.Config, password string) {
	t := c.t
	port := freePort(t)
	// The server: a unix socket directory or a TCP host, as in TEST_DATABASE_URL.
	db := fmt.Sprintf("host=%s port=%d dbname=%s", base.Host, base.Port, c.dbName)
	userlist := filepath.Join(c.dir, "userlist.txt")
	ini := renderINI(t, filepath.Join(proctest.RepoRoot(t), "deploy", "pgbouncer", "pgbouncer.ini"), map[string]string{
		"databases.usersd":      db,
		"pgbouncer.listen_addr": "127.0.0.1",
		"pgbouncer.listen_port": strconv.Itoa(port),
		"pgbouncer.auth_file":   userlist,
		"pgbouncer.stats_users": base.User,
	})
	iniPath := filepath.Join(c.dir, "pgbouncer.ini")
	quote := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
	// A plain-text password: PgBouncer checks the client's SCRAM login
	// against it and logs in to PostgreSQL with it when asked to.
	if err := os.WriteFile(userlist, []byte(quote(base.User)+" "+quote(password)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(iniPath, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, iniPath)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if os.Getuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("PgBouncer refuses to run as root and there is no postgres OS user to run it as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(userlist, uid, gid); err != nil {
			t.Fatal(err)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Dir = "/"
	}
	c.bouncer = startProc(t, "pgbouncer", cmd)
	t.Cleanup(func() {
		if !c.bouncer.stop(syscall.SIGTERM, 10*time.Second) {
			t.Errorf("pgbouncer did not exit within 10s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("pgbouncer output:\n%s", c.bouncer.out.Tail(80))
		}
	})

	userinfo := url.UserPassword(base.User, password)
	c.bouncerURL = (&url.URL{Scheme: "postgres", User: userinfo, Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Path: "/usersd", RawQuery: "sslmode=disable"}).String()
	c.adminURL = (&url.URL{Scheme: "postgres", User: userinfo, Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Path: "/pgbouncer",
		RawQuery: "sslmode=disable&default_query_exec_mode=simple_protocol"}).String()

	// Ready once a query goes through it to PostgreSQL.
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.bouncerURL+"&default_query_exec_mode=exec")
		if err == nil {
			_, err = conn.Exec(ctx, "SELECT 1")
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return
		}
		if c.bouncer.exited() || time.Now().After(deadline) {
			t.Fatalf("pgbouncer does not answer (%v):\n%s", err, c.bouncer.out.Tail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// renderINI returns the ini file at path with the values of the given
// "section.key" entries replaced. Each must occur exactly once, so that the
// example and the test cannot drift apart silently.
func renderINI(t testing.TB, path string, set map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	var out []string
	section := ""
	for ln := range strings.SplitSeq(string(b), "\n") {
		trimmed := strings.TrimSpace(ln)
		if strings.HasPrefix(trimmed, "[") && strings.HasSuffix(trimmed, "]") {
			section = strings.Trim(trimmed, "[]")
		} else if k, _, ok := strings.Cut(trimmed, "="); ok && !strings.HasPrefix(trimmed, ";") {
			key := section + "." + strings.TrimSpace(k)
			if v, ok := set[key]; ok {
				seen[key]++
				ln = strings.TrimSpace(k) + " = " + v
			}
		}
		out = append(out, ln)
	}
	for key := range set {
		if seen[key] != 1 {
			t.Fatalf("%s: %q occurs %d times, want once", path, key, seen[key])
		}
	}
	return strings.Join(out, "\n")
}

// HAProxy.

type haproxy struct {
	proc    *proc
	addr    string // the frontend, 127.0.0.1:port
	url     string
	sock    string // the stats socket
	servers []haServer
}

type haServer struct{ name, addr string }

// startHAProxy runs deploy/haproxy/haproxy.cfg as it is, with its addresses
// set through the environment variables it reads, and waits until its stats
// socket answers.
func (c *cluster) startHAProxy(bin string) {
	t := c.t
	cfg := filepath.Join(proctest.RepoRoot(t), "deploy", "haproxy", "haproxy.cfg")
	h := &haproxy{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))), sock: filepath.Join(c.dir, "haproxy.sock")}
	h.url = "http://" + h.addr
	// One thread: HAProxy drops "log stdout" lines when its threads contend
	// for the output (haproxy.cfg), and the suite needs every line.
	env := []string{"PATH=" + os.Getenv("PATH"), "HAPROXY_BIND=" + h.addr, "HAPROXY_STATS_SOCKET=" + h.sock, "HAPROXY_NBTHREAD=1"}
	for i := 1; i <= 3; i++ {
		s := haServer{name: fmt.Sprintf("usersd%d", i), addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))}
		h.servers = append(h.servers, s)
		env = append(env, fmt.Sprintf("USERSD%d_ADDR=%s", i, s.addr))
	}

	check := exec.Command(bin, "-c", "-f", cfg)
	check.Env = env
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c -f %s: %v\n%s", cfg, err, out)
	}
	cmd := exec.Command(bin, "-db", "-f", cfg)
	cmd.Env = env
	cmd.Dir = c.dir
	h.proc = startProc(t, "haproxy", cmd)
	c.haproxy = h
	t.Cleanup(func() {
		if !h.proc.stop(syscall.SIGTERM, 10*time.Second) {
			t.Errorf("haproxy did not exit within 10s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("haproxy output (last lines):\n%s", h.proc.out.Tail(120))
		}
		if dump := os.Getenv("CLUSTER_DEBUG"); strings.HasPrefix(dump, "/") {
			_ = os.WriteFile(dump, []byte(h.proc.out.Tail(1<<30)), 0o644)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := h.states()
		if err == nil {
			return
		}
		if h.proc.exited() || time.Now().After(deadline) {
			t.Fatalf("haproxy's stats socket does not answer (%v):\n%s", err, h.proc.out.Tail(40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// command sends one command to the runtime API and returns the answer.
func (h *haproxy) command(cmd string) (string, error) {
	conn, err := net.DialTimeout("unix", h.sock, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(conn)
	return string(b), err
}

// droppedLogs is HAProxy's DroppedLogs counter: log lines it could not
// write. The suite's analysis needs every request line.
func (h *haproxy) droppedLogs(t testing.TB) int {
	t.Helper()
	out, err := h.command("show info")
	if err != nil {
		t.Fatalf("show info: %v", err)
	}
	for ln := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(ln, "DroppedLogs: "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatalf("show info has no DroppedLogs: %q", out)
	return 0
}

// serverStat is one row of "show stat" for a server of the usersd backend.
type serverStat struct {
	status string // UP, DOWN, "UP 1/2" (going down), "DOWN 1/2" (going up), MAINT
	total  int    // stot: requests sent to it so far
}

// states reads the usersd backend's servers from "show stat".
func (h *haproxy) states() (map[string]serverStat, error) {
	out, err := h.command("show stat")
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(out, "# ")))
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil || len(recs) < 2 {
		return nil, fmt.Errorf("show stat: %v (%q)", err, out)
	}
	col := map[string]int{}
	for i, name := range recs[0] {
		col[name] = i
	}
	states := map[string]serverStat{}
	for _, rec := range recs[1:] {
		if len(rec) <= col["status"] || rec[col["pxname"]] != "usersd" || rec[col["svname"]] == "BACKEND" {
			continue
		}
		total, _ := strconv.Atoi(rec[col["stot"]])
		states[rec[col["svname"]]] = serverStat{status: rec[col["status"]], total: total}
	}
	if len(states) != len(h.servers) {
		return nil, fmt.Errorf("show stat lists %d usersd servers, want %d", len(states), len(h.servers))
	}
	return states, nil
}

// waitStatus waits until HAProxy reports server as status (UP or DOWN) and
// returns when it first saw that.
func (h *haproxy) waitStatus(t testing.TB, server, status string, d time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st, err := h.states()
		if err == nil && st[server].status == status {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy did not report %s %s within %s (now: %v, %v)", server, status, d, st[server], err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stateChanges are HAProxy's "Server usersd/usersd2 is DOWN, reason: ..."
// lines, with the time they were written.
var stateChangeRE = regexp.MustCompile(`Server usersd/(\w+) is (UP|DOWN)\b(.*)`)

type stateChange struct {
	at             time.Time
	server, status string
	reason         string
}

func (h *haproxy) stateChanges() []stateChange {
	var out []stateChange
	for _, ln := range h.proc.out.Lines() {
		if m := stateChangeRE.FindStringSubmatch(ln.text); m != nil {
			// HAProxy writes each change twice (log and stderr): keep one.
			if n := len(out); n > 0 && out[n-1].server == m[1] && out[n-1].status == m[2] && ln.at.Sub(out[n-1].at) < 100*time.Millisecond {
				continue
			}
			out = append(out, stateChange{at: ln.at, server: m[1], status: m[2], reason: strings.TrimSpace(m[3])})
		}
	}
	return out
}

// firstChange is the first change of server to status after t0.
func (h *haproxy) firstChange(server, status string, t0 time.Time) (stateChange, bool) {
	for _, s := range h.stateChanges() {
		if s.server == server && s.status == status && s.at.After(t0) {
			return s, true
		}
	}
	return stateChange{}, false
}

// reqLog is one request line of HAProxy's log (log-format in haproxy.cfg).
type reqLog struct {
	at      time.Time // when the line was written: the request's end
	server  string    // the last server tried, <NOSRV> if none
	timers  string    // TR/Tw/Tc/Tr/Ta
	status  int
	term    string // termination state, "----" for a normal end
	retries string // %rc: "0", "1", "+1" (redispatched)
	reqID   string
	request string
	text    string
}

var reqLogRE = regexp.MustCompile(`^\S+ \[[^\]]+\] \S+ usersd/(\S+) (\S+) (-?\d+) -?\d+ (\S{4}) \d+/\d+/\d+/\d+/(\+?\d+) \d+/\d+ \{([^}]*)\} "(.*)"$`)

// requests parses the request lines logged so far, by X-Request-Id.
func (h *haproxy) requests() map[string]reqLog {
	out := map[string]reqLog{}
	for _, ln := range h.proc.out.Lines() {
		m := reqLogRE.FindStringSubmatch(ln.text)
		if m == nil {
			continue
		}
		status, _ := strconv.Atoi(m[3])
		r := reqLog{at: ln.at, server: m[1], timers: m[2], status: status, term: m[4], retries: m[5], reqID: m[6], request: m[7], text: ln.text}
		out[r.reqID] = r
	}
	return out
}

// Replicas.

// replica is one usersd server of HAProxy's backend: a fixed address and
// the processes that ran there, the last one current.
type replica struct {
	c     *cluster
	name  string // HAProxy's server name
	addr  string
	procs []*proc
}

func (r *replica) cur() *proc { return r.procs[len(r.procs)-1] }

// start runs a new usersd process at the replica's address, without waiting.
func (r *replica) start(t testing.TB) *proc {
	t.Helper()
	cmd := exec.Command(r.c.usersdBin)
	cmd.Dir = r.c.usersdDir // an empty directory: no stray .env
	env := map[string]string{"PATH": os.Getenv("PATH"), "BIND": r.addr, "LOG_FORMAT": "json", "LOG_LEVEL": "info"}
	maps.Copy(env, r.c.usersdEnv)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	p := startProc(t, fmt.Sprintf("%s#%d", r.name, len(r.procs)+1), cmd)
	r.procs = append(r.procs, p)
	return p
}

// waitReady waits until the current process logged "usersd listening" and
// answers GET /healthz with 200 on its own address.
func (r *replica) waitReady(t testing.TB, d time.Duration) {
	t.Helper()
	p := r.cur()
	deadline := time.Now().Add(d)
	for !listening(p) {
		if p.exited() {
			t.Fatalf("%s exited before listening:\n%s", p.name, p.out.Tail(40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no \"usersd listening\" line within %s:\n%s", p.name, d, p.out.Tail(40))
		}
		time.Sleep(10 * time.Millisecond)
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	for {
		resp, err := hc.Get("http://" + r.addr + "/healthz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("%s: GET /healthz not 200 within %s (%v):\n%s", p.name, d, err, p.out.Tail(40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listening reports whether p logged its "usersd listening" line.
func listening(p *proc) bool {
	for _, ln := range p.out.Lines() {
		if strings.Contains(ln.text, `"usersd listening"`) {
			return true
		}
	}
	return false
}

// logRecords returns p's JSON log lines whose msg is msg.
func logRecords(p *proc, msg string) []map[string]any {
	var out []map[string]any
	for _, ln := range p.out.Lines() {
		if !strings.Contains(ln.text, msg) {
			continue
		}
		var rec map[string]any
		if json.Unmarshal([]byte(ln.text), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// stopReplicas stops every replica still running with SIGTERM, together,
// and checks every process's output.
func (c *cluster) stopReplicas() {
	t := c.t
	var wg sync.WaitGroup
	for _, r := range c.replicas {
		if len(r.procs) == 0 {
			continue
		}
		p := r.cur()
		wg.Go(func() {
			if !p.stop(syscall.SIGTERM, shutdownTimeout+5*time.Second) {
				t.Errorf("%s did not exit within %s of SIGTERM; killed", p.name, shutdownTimeout+5*time.Second)
			}
		})
	}
	wg.Wait()
	for _, r := range c.replicas {
		for _, p := range r.procs {
			checkUsersdOutput(t, p)
		}
	}
	if t.Failed() {
		for _, r := range c.replicas {
			for _, p := range r.procs {
				t.Logf("%s output (last lines):\n%s", p.name, p.out.Tail(60))
			}
		}
	}
}

// checkUsersdOutput fails the test when a replica logged a panic or answered
// a request with an internal error.
func checkUsersdOutput(t *testing.T, p *proc) {
	for _, ln := range p.out.Lines() {
		if strings.Contains(ln.text, "panic") {
			t.Errorf("%s logged a panic: %s", p.name, ln.text)
			return
		}
		if strings.Contains(ln.text, `"msg":"internal error"`) {
			t.Errorf("%s answered with an internal error: %s", p.name, ln.text)
			return
		}
	}
}

// pgConn opens a direct connection to the test database for the test's own
// queries.
func (c *cluster) pgConn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.directURL)
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(ctx)
	})
	return conn
}
