package dbtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/acme/usersd/internal/proctest"
)

// Cluster is a PostgreSQL cluster of the test's own, managed through
// scripts/pgcluster.sh (USERSD_PGCLUSTER, which with-testdb.sh sets), that
// the test may stop, kill and restart, or give a streaming replica. It
// listens on a unix socket in its directory only.
type Cluster struct {
	t      testing.TB
	script string
	Dir    string
}

// ClusterOption adjusts NewCluster.
type ClusterOption func(*clusterOptions)

type clusterOptions struct{ durable bool }

// Durable keeps synchronous_commit on: without it a kill -9 loses commits
// that were already acknowledged (fsync stays off: only the processes die
// in tests, not the machine).
func Durable() ClusterOption { return func(o *clusterOptions) { o.durable = true } }

// NewCluster creates and starts a throwaway cluster with a database
// "usersd", stopped and removed when the test ends.
func NewCluster(t testing.TB, opts ...ClusterOption) *Cluster {
	t.Helper()
	var o clusterOptions
	for _, opt := range opts {
		opt(&o)
	}
	c := newClusterDir(t, "usersd-pg-")
	c.must("init", c.Dir, "--fast")
	if o.durable {
		c.appendConf("synchronous_commit = on\n")
	}
	c.Start()
	c.must("createdb", c.Dir, "usersd")
	return c
}

// NewReplica creates and starts a streaming replica (hot standby) of c,
// replaying delay behind it (recovery_min_apply_delay).
func (c *Cluster) NewReplica(t testing.TB, delay time.Duration) *Cluster {
	t.Helper()
	r := newClusterDir(t, "usersd-replica-")
	c.must("replica", c.Dir, r.Dir, fmt.Sprintf("%dms", delay.Milliseconds()))
	r.Start()
	return r
}

// newClusterDir makes the directory of a cluster, and the cleanup that
// stops it, shows its log if the test failed, and removes it.
func newClusterDir(t testing.TB, prefix string) *Cluster {
	t.Helper()
	script := os.Getenv("USERSD_PGCLUSTER")
	if script == "" {
		script = filepath.Join(proctest.RepoRoot(t), "scripts", "pgcluster.sh")
	}
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	// initdb and postgres run as the postgres OS user when we are root.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, script: script, Dir: dir}
	t.Cleanup(func() {
		if _, err := c.run("stop", dir, "immediate"); err != nil {
			t.Errorf("stop cluster: %v", err)
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "postgres.log")); err == nil {
				t.Logf("postgres log of %s:\n%s", dir, proctest.Tail(string(b), 60))
			}
		}
		_ = os.RemoveAll(dir)
	})
	return c
}

func (c *Cluster) appendConf(line string) {
	c.t.Helper()
	conf := filepath.Join(c.Dir, "data", "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	_, err = f.WriteString(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		c.t.Fatalf("write %s: %v", conf, err)
	}
}

// run runs pgcluster.sh with args and returns its output.
func (c *Cluster) run(args ...string) (string, error) {
	out, err := proctest.Exec(proctest.Command{Path: c.script, Args: args}, 2*time.Minute)
	if err != nil {
		return "", fmt.Errorf("pgcluster.sh %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

func (c *Cluster) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// URL is the connection URL of database db over the unix socket.
func (c *Cluster) URL(db string) string {
	c.t.Helper()
	return strings.TrimSpace(c.must("url", c.Dir, db))
}

// Start starts the cluster and returns once it accepts connections.
func (c *Cluster) Start() { c.t.Helper(); c.must("start", c.Dir) }

// Stop stops it: mode is smart, fast or immediate.
func (c *Cluster) Stop(mode string) { c.t.Helper(); c.must("stop", c.Dir, mode) }

// postmasterPID is line 1 of data/postmaster.pid.
func (c *Cluster) postmasterPID() int {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.Dir, "data", "postmaster.pid"))
	if err != nil {
		c.t.Fatalf("read postmaster.pid: %v", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 1 {
		c.t.Fatalf("postmaster.pid line 1 is %q", line)
	}
	return pid
}

// Kill9 SIGKILLs the postmaster and waits until it and every backend it
// had are gone (backends notice their postmaster's death and exit;
// PostgreSQL will not start again while one still holds the shared
// memory).
func (c *Cluster) Kill9() {
	c.t.Helper()
	pid := c.postmasterPID()
	procs := append(children(pid), pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		c.t.Fatalf("kill -9 %d: %v", pid, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range procs {
		for alive(p) {
			if time.Now().After(deadline) {
				c.t.Fatalf("postgres process %d still alive 20s after kill -9 of the postmaster", p)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _ := procStat(p); ppid == pid {
			out = append(out, p)
		}
	}
	return out
}

// procStat returns the parent pid and state of process p from /proc.
func procStat(p int) (ppid int, state byte) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
	if err != nil {
		return 0, 0
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, 0
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[0][0]
}

// alive reports whether process p exists and is not a zombie.
func alive(p int) bool {
	_, st := procStat(p)
	return st != 0 && st != 'Z' && st != 'X'
}
