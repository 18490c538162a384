//go:build cluster

// Package cluster runs usersd as it is deployed with more than one replica:
// three usersd processes (bin/usersd) behind HAProxy, which serves HTTP/1.1
// and h2c on one port and health-checks /healthz every second, all of them
// querying one PostgreSQL through PgBouncer in transaction pooling, with the
// configurations of deploy/haproxy and deploy/pgbouncer. It checks that
// replicas starting together on an empty database migrate it once, that a
// rolling restart under load fails no request, that the change feed's
// watchers (SSE and RPC streams) and a webhook get exactly the changes that
// load committed across the restart, that kill -9 of a replica fails only
// the requests it was handling, and that every user created meanwhile gets
// exactly one welcome job and one welcome mail.
//
// Run it with `make test-cluster` (scripts/test-cluster.sh), which builds the
// binary, provides TEST_DATABASE_URL and installs haproxy and pgbouncer when
// they are missing.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/acme/usersd/internal/dbtest"
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

// tool finds haproxy or pgbouncer.
func tool(t testing.TB, name string) string {
	t.Helper()
	p, err := proctest.LookPath(name)
	if err != nil {
		t.Fatalf("%v: run the suite with `make test-cluster`, which installs it (apt-get install haproxy pgbouncer)", err)
	}
	return p
}

// The cluster.

// cluster is everything the suite runs: a fresh database, PgBouncer,
// HAProxy, an SMTP sink, an OpenID issuer and three usersd replicas.
type cluster struct {
	t          *testing.T
	dir        string // configs and sockets, readable by PgBouncer's user
	db         dbtest.Database
	bouncerURL string // the test database through PgBouncer, as the replicas use it
	adminURL   string // PgBouncer's console database
	smtp       *smtptest.Server
	issuer     *devissuer.Issuer
	token      string
	adminToken string // token, and the scope to manage webhooks
	bouncer    *proctest.Process
	haproxy    *haproxy
	replicas   []*replica
	// usersd holds every replica process, restarts included: they outlive
	// the phase that started them, and stop together when the suite ends.
	usersd *proctest.Group
}

// newCluster starts PgBouncer and HAProxy in front of a new, empty database,
// and prepares (but does not start) three replicas. Everything is stopped and
// removed when the test ends.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{t: t}
	usersdBin := proctest.Binary(t)
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

	c.db = dbtest.Empty(t, "usersd_cluster")
	c.smtp = smtptest.New(t)
	c.issuer = devissuer.StartTest(t, audience, "RS256")
	c.token = c.issuer.Token("cluster-test", "users:read", "users:write")
	c.adminToken = c.issuer.Token("cluster-test", "users:read", "users:write", "webhooks:admin")

	c.startPgBouncer(bouncerBin)
	c.startHAProxy(haproxyBin)

	env := map[string]string{
		"HOME":                 os.Getenv("HOME"),
		"DATABASE_URL":         c.bouncerURL + "&default_query_exec_mode=exec",
		"MIGRATE_DATABASE_URL": c.db.URL,
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
		// On purpose: the suite's webhook receiver listens on 127.0.0.1, and
		// usersd refuses loopback and private webhook addresses by default, so
		// that a webhook cannot be aimed at the network it runs in.
		"WEBHOOK_ALLOW_PRIVATE": "true",
	}
	for _, s := range c.haproxy.servers {
		env["BIND"] = s.addr
		cmd := proctest.Usersd(t, usersdBin, env)
		cmd.Name = s.name
		c.replicas = append(c.replicas, &replica{c: c, name: s.name, cmd: cmd})
	}
	// Last registered, first run: the replicas stop before HAProxy and
	// PgBouncer, all at once (each drains for SHUTDOWN_DRAIN).
	c.usersd = proctest.NewGroup(t)
	return c
}

// startPgBouncer renders deploy/pgbouncer/pgbouncer.ini for this run and
// starts PgBouncer on a free loopback port, as the postgres OS user when the
// test runs as root (PgBouncer refuses to run as root). Clients log in with
// TEST_DATABASE_URL's password, or a new one when it has none: the throwaway
// cluster trusts local connections.
func (c *cluster) startPgBouncer(bin string) {
	t := c.t
	base := c.db.Config
	password := base.Password
	if password == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		password = hex.EncodeToString(b[:])
	}
	port := proctest.FreePort(t)
	// The server: a unix socket directory or a TCP host, as in TEST_DATABASE_URL.
	db := fmt.Sprintf("host=%s port=%d dbname=%s", base.Host, base.Port, c.db.Name)
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

	cmd := proctest.Command{Name: "pgbouncer", Path: bin, Args: []string{iniPath}, Dir: c.dir, Env: []string{"PATH=" + os.Getenv("PATH")}}
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
		cmd.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		cmd.Dir = "/"
	}
	c.bouncer = proctest.Run(t, cmd, proctest.StopGracefully(10*time.Second), proctest.LogTail(80))

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
		if c.bouncer.Exited() || time.Now().After(deadline) {
			t.Fatalf("pgbouncer does not answer (%v):\n%s", err, c.bouncer.Output.Tail(40))
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
	proc    *proctest.Process
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
	h := &haproxy{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(proctest.FreePort(t))), sock: filepath.Join(c.dir, "haproxy.sock")}
	h.url = "http://" + h.addr
	// One thread: HAProxy drops "log stdout" lines when its threads contend
	// for the output (haproxy.cfg), and the suite needs every line.
	env := []string{"PATH=" + os.Getenv("PATH"), "HAPROXY_BIND=" + h.addr, "HAPROXY_STATS_SOCKET=" + h.sock, "HAPROXY_NBTHREAD=1"}
	for i := 1; i <= 3; i++ {
		s := haServer{name: fmt.Sprintf("usersd%d", i), addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(proctest.FreePort(t)))}
		h.servers = append(h.servers, s)
		env = append(env, fmt.Sprintf("USERSD%d_ADDR=%s", i, s.addr))
	}

	if out, err := proctest.Exec(proctest.Command{Path: bin, Args: []string{"-c", "-f", cfg}, Env: env}, time.Minute); err != nil {
		t.Fatalf("haproxy -c -f %s: %v\n%s", cfg, err, out)
	}
	// Registered first, so run once HAProxy has stopped and written all.
	t.Cleanup(func() {
		if dump := os.Getenv("CLUSTER_DEBUG"); strings.HasPrefix(dump, "/") && h.proc != nil {
			_ = os.WriteFile(dump, []byte(h.proc.Output.String()), 0o644)
		}
	})
	h.proc = proctest.Run(t, proctest.Command{Path: bin, Args: []string{"-db", "-f", cfg}, Env: env, Dir: c.dir},
		proctest.StopGracefully(10*time.Second), proctest.LogTail(120))
	c.haproxy = h
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := h.states()
		if err == nil {
			return
		}
		if h.proc.Exited() || time.Now().After(deadline) {
			t.Fatalf("haproxy's stats socket does not answer (%v):\n%s", err, h.proc.Output.Tail(40))
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
	for _, ln := range h.proc.Output.Lines() {
		if m := stateChangeRE.FindStringSubmatch(ln.Text); m != nil {
			// HAProxy writes each change twice (log and stderr): keep one.
			if n := len(out); n > 0 && out[n-1].server == m[1] && out[n-1].status == m[2] && ln.At.Sub(out[n-1].at) < 100*time.Millisecond {
				continue
			}
			out = append(out, stateChange{at: ln.At, server: m[1], status: m[2], reason: strings.TrimSpace(m[3])})
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
	backend string
	server  string // the last server tried, <NOSRV> if none
	timers  string // TR/Tw/Tc/Tr/Ta
	status  int
	term    string // termination state, "----" for a normal end
	retries string // %rc: "0", "1", "+1" (redispatched)
	reqID   string
	request string
	text    string
}

var reqLogRE = regexp.MustCompile(`^\S+ \[[^\]]+\] \S+ (\S+)/(\S+) (\S+) (-?\d+) -?\d+ (\S{4}) \d+/\d+/\d+/\d+/(\+?\d+) \d+/\d+ \{([^}]*)\} "(.*)"$`)

// requests parses the request lines of the usersd backend logged so far, by
// X-Request-Id.
func (h *haproxy) requests() map[string]reqLog { return h.logged("usersd") }

// logged parses the request lines of backend logged so far, by X-Request-Id.
func (h *haproxy) logged(backend string) map[string]reqLog {
	out := map[string]reqLog{}
	for _, ln := range h.proc.Output.Lines() {
		m := reqLogRE.FindStringSubmatch(ln.Text)
		if m == nil || m[1] != backend {
			continue
		}
		status, _ := strconv.Atoi(m[4])
		r := reqLog{at: ln.At, backend: m[1], server: m[2], timers: m[3], status: status, term: m[5], retries: m[6], reqID: m[7], request: m[8], text: ln.Text}
		out[r.reqID] = r
	}
	return out
}

// streamExpiries reads "show sess all" and returns, for each stream that
// backend is serving now, how long HAProxy leaves it before its next timer
// fires (the nearest of its timeouts; HAProxy shows the two largest units,
// so this is a lower bound), or -1 when no timer is armed.
func (h *haproxy) streamExpiries(backend string) ([]time.Duration, error) {
	out, err := h.command("show sess all")
	if err != nil {
		return nil, err
	}
	var exps []time.Duration
	ours := false
	for ln := range strings.SplitSeq(out, "\n") {
		field := strings.TrimSpace(ln)
		switch {
		case strings.HasPrefix(ln, "0x"): // a stream's first line
			ours = false
		case strings.HasPrefix(field, "backend="):
			ours = strings.HasPrefix(field, "backend="+backend+" ")
		case ours && strings.HasPrefix(field, "task="):
			m := taskExpRE.FindStringSubmatch(field)
			if m == nil {
				return nil, fmt.Errorf("show sess all: no exp= in %q", field)
			}
			d, err := haproxyDuration(m[1])
			if err != nil {
				return nil, fmt.Errorf("show sess all: %v in %q", err, field)
			}
			exps = append(exps, d)
		}
	}
	return exps, nil
}

var taskExpRE = regexp.MustCompile(`\bexp=(\S+)`)

// haproxyDuration reads HAProxy's human-readable time ("59m58s", "1d1h",
// "<NEVER>" as -1).
func haproxyDuration(s string) (time.Duration, error) {
	if s == "<NEVER>" {
		return -1, nil
	}
	units := map[byte]time.Duration{'d': 24 * time.Hour, 'h': time.Hour, 'm': time.Minute, 's': time.Second}
	var d time.Duration
	for rest := s; rest != ""; {
		i := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if i <= 0 || units[rest[i]] == 0 {
			return 0, fmt.Errorf("time %q", s)
		}
		n, _ := strconv.Atoi(rest[:i])
		d += time.Duration(n) * units[rest[i]]
		rest = rest[i+1:]
	}
	if s == "" {
		return 0, errors.New("empty time")
	}
	return d, nil
}

// Replicas.

// replica is one usersd server of HAProxy's backend: the command that
// runs it at its fixed address, and the processes that ran there, the last
// one current.
type replica struct {
	c     *cluster
	name  string // HAProxy's server name
	cmd   proctest.Command
	procs []*proctest.Process
}

func (r *replica) cur() *proctest.Process { return r.procs[len(r.procs)-1] }

// start runs usersd at the replica's address, first or again, without
// waiting.
func (r *replica) start(t testing.TB) *proctest.Process {
	t.Helper()
	var p *proctest.Process
	if len(r.procs) == 0 {
		p = r.c.usersd.Run(t, r.cmd,
			proctest.StopGracefully(shutdownTimeout+5*time.Second),
			proctest.NoServerErrors(),
			proctest.LogTail(60))
	} else {
		p = r.cur().Restart(t)
	}
	r.procs = append(r.procs, p)
	return p
}

// ready waits up to d until the current process logged "usersd listening"
// and answers GET /livez and /healthz with 200 on its own address.
func (r *replica) ready(d time.Duration) error {
	p := r.cur()
	if err := p.WaitReady(d); err != nil {
		return fmt.Errorf("%s: %v:\n%s", p.Name, err, p.Output.Tail(40))
	}
	return nil
}
