// Package proctest runs commands as subprocesses of a test: usersd itself
// and what the suites put around it (HAProxy, PgBouncer, podman, PostgreSQL's
// tools). A process's output is captured line by line; it is stopped when the
// test ends, and its output is logged when the test failed.
package proctest

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Command is a program to run.
type Command struct {
	Name string   // in logs and failures; the base name of Path when empty
	Path string   // the executable
	Args []string // without the program name
	Env  []string // KEY=value; nil: the test's own environment
	Dir  string   // the working directory; empty: the test's own
	// Credential runs the process as another user: PgBouncer and the
	// PostgreSQL server refuse to run as root.
	Credential *syscall.Credential
}

// Process is one run of a Command. Addr and URL are set for usersd once it
// has logged where it listens (WaitListening; Start does it).
type Process struct {
	Name   string
	Addr   string      // 127.0.0.1:port the process listens on
	URL    string      // "http://" + Addr
	Output *SyncBuffer // everything the process wrote to stdout and stderr

	command Command
	opts    options
	group   *Group
	run     int // 1 for the first run of the command, 2 for its restart...
	cmd     *exec.Cmd
	started time.Time
	exitAt  time.Time     // valid once done is closed
	done    chan struct{} // closed once the process has exited and its output is complete
}

// Option adjusts Run and Start.
type Option func(*options)

type options struct {
	ready       bool
	stopTimeout time.Duration
	logTail     int
	checks      []func(t testing.TB, p *Process)
}

// WaitReady makes Start return only once GET /livez and then GET /healthz
// have answered 200, within the same 30s Start allows for listening.
func WaitReady() Option { return func(o *options) { o.ready = true } }

// StopGracefully makes the end of the test stop a still running process with
// SIGTERM; when it has not exited within d, the test fails and the process is
// killed. Without it the process is killed at once.
func StopGracefully(d time.Duration) Option { return func(o *options) { o.stopTimeout = d } }

// CheckOutput makes the end of the test call check with the process's whole
// output, after the process has exited and before the output is logged for a
// failed test, so that check can fail the test on what the process wrote.
func CheckOutput(check func(t testing.TB, output string)) Option {
	return func(o *options) {
		o.checks = append(o.checks, func(t testing.TB, p *Process) { check(t, p.Output.String()) })
	}
}

// LogTail makes a failed test log only the last n lines of the output:
// enough for a long-running proxy whose request log runs to thousands.
func LogTail(n int) Option { return func(o *options) { o.logTail = n } }

// outputGrace is how long a process's output may stay open after it has
// exited: a child it leaves running (podman's conmon) may hold it forever.
const outputGrace = 5 * time.Second

// Group is processes whose lifetime is one test's: when that test ends,
// those still running are stopped all at once (each as its options say),
// and then every process of the group, restarts included, has its output
// checked and, if the test failed, logged. A suite whose processes outlive
// the subtest that started (or restarted) them keeps them in a group of the
// parent test.
type Group struct {
	mu    sync.Mutex
	procs []*Process
}

// NewGroup returns an empty group that ends with t.
func NewGroup(t testing.TB) *Group {
	g := &Group{}
	t.Cleanup(func() { g.end(t) })
	return g
}

// Run starts c in g. t is the test that fails when c cannot start; it may
// be a subtest of the group's test.
func (g *Group) Run(t testing.TB, c Command, opts ...Option) *Process {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return g.start(t, c, o, 1)
}

// Run starts c, stopped when t ends.
func Run(t testing.TB, c Command, opts ...Option) *Process {
	t.Helper()
	return NewGroup(t).Run(t, c, opts...)
}

// Restart runs p's command again, with the same options, in p's group (so
// it lives as long as p's test), and returns the new process, named
// "name#2" and so on. p must have exited; the caller ends it as it wants
// (SIGTERM, kill -9) first. It does not wait for anything: for usersd, call
// WaitListening or WaitReady.
func (p *Process) Restart(t testing.TB) *Process {
	t.Helper()
	if !p.Exited() {
		t.Fatalf("restart %s: it is still running", p.Name)
	}
	return p.group.start(t, p.command, p.opts, p.run+1)
}

func (g *Group) start(t testing.TB, c Command, o options, run int) *Process {
	t.Helper()
	p, err := start(c, o, run)
	if err != nil {
		t.Fatal(err)
	}
	p.group = g
	g.mu.Lock()
	g.procs = append(g.procs, p)
	g.mu.Unlock()
	return p
}

// start runs c with its stdout and stderr on one pipe of 1 MiB, read
// continuously: HAProxy writes its log without blocking and drops the lines
// the pipe cannot take at once, and the suites need every line. The process
// gets SIGKILL if the test binary dies (a timeout's panic), so none is left
// behind.
func start(c Command, o options, run int) (*Process, error) {
	p := &Process{
		Name:    cmp.Or(c.Name, filepath.Base(c.Path)),
		Output:  &SyncBuffer{},
		command: c,
		opts:    o,
		run:     run,
		done:    make(chan struct{}),
	}
	if run > 1 {
		p.Name += "#" + strconv.Itoa(run)
	}
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Env, cmd.Dir = c.Env, c.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: c.Credential}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	const fSetPipeSize = 1031 // F_SETPIPE_SZ (Linux); not in package syscall
	// Should it fail, HAProxy's DroppedLogs counter tells (test/cluster).
	_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, w.Fd(), fSetPipeSize, 1<<20)
	cmd.Stdout, cmd.Stderr = w, w
	p.cmd = cmd
	p.started = time.Now()
	err = cmd.Start()
	w.Close() // the child has its own copy
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("start %s: %w", p.Name, err)
	}
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(p.Output, r)
		close(copied)
	}()
	go func() {
		_ = cmd.Wait()
		p.exitAt = time.Now()
		select {
		case <-copied:
		case <-time.After(outputGrace):
		}
		r.Close()
		<-copied
		close(p.done)
	}()
	return p, nil
}

// Exec runs c to its end and returns its output (stdout and stderr
// together). The error is an *exec.ExitError when c exited non-zero; c is
// killed, and the error says so, when it still runs after timeout.
func Exec(c Command, timeout time.Duration) (string, error) {
	p, err := start(c, options{}, 1)
	if err != nil {
		return "", err
	}
	if _, exited := p.Wait(timeout); !exited {
		p.kill()
		return p.Output.String(), fmt.Errorf("still running after %s; killed", timeout)
	}
	if !p.cmd.ProcessState.Success() {
		return p.Output.String(), &exec.ExitError{ProcessState: p.cmd.ProcessState}
	}
	return p.Output.String(), nil
}

// end stops the group's running processes together, then checks and logs
// the output of each.
func (g *Group) end(t testing.TB) {
	g.mu.Lock()
	procs := g.procs
	g.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() {
			if d := p.opts.stopTimeout; d > 0 && !p.Stop(syscall.SIGTERM, d) {
				t.Errorf("%s did not exit within %s of SIGTERM; killed it", p.Name, d)
			}
			p.kill()
		})
	}
	wg.Wait()
	for _, p := range procs {
		for _, check := range p.opts.checks {
			check(t, p)
		}
	}
	if !t.Failed() {
		return
	}
	for _, p := range procs {
		out, what := p.Output.String(), ""
		if p.opts.logTail > 0 {
			out, what = Tail(out, p.opts.logTail), fmt.Sprintf(", last %d lines", p.opts.logTail)
		}
		t.Logf("%s output (%s%s):\n%s", p.Name, cmp.Or(p.Addr, "pid "+strconv.Itoa(p.Pid())), what, out)
	}
}

// Stop sends sig and waits up to d for the process to exit, then kills it.
// It reports whether the process exited by itself in time (true as well
// when it had exited already).
func (p *Process) Stop(sig os.Signal, d time.Duration) bool {
	if p.Exited() {
		return true
	}
	_ = p.Signal(sig)
	if _, exited := p.Wait(d); exited {
		return true
	}
	p.kill()
	return false
}

// kill ends the process at once, if it still runs, and waits for its end.
func (p *Process) kill() {
	if !p.Exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Started is when the process was started.
func (p *Process) Started() time.Time { return p.started }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitTime is when the test saw the process exit (its sockets were closed
// by then), or the zero time while it runs.
func (p *Process) ExitTime() time.Time {
	if !p.Exited() {
		return time.Time{}
	}
	return p.exitAt
}

// Wait waits up to d for the process to exit and returns its exit code (-1
// when a signal ended it); exited is false when it is still running after d.
func (p *Process) Wait(d time.Duration) (code int, exited bool) {
	if !p.Exited() {
		select {
		case <-p.done:
		case <-time.After(d):
			return 0, false
		}
	}
	return p.cmd.ProcessState.ExitCode(), true
}
