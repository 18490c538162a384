// Package proctest runs a usersd binary as a subprocess of a test: on a free
// loopback port, with its output captured, stopped when the test ends.
package proctest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long Start waits for the process to listen (and,
// with WaitReady, to be ready).
const startTimeout = 30 * time.Second

// Process is one running usersd. Addr and URL are set once Start returns.
type Process struct {
	Addr   string      // 127.0.0.1:port the process listens on
	URL    string      // "http://" + Addr
	Output *SyncBuffer // everything the process wrote to stdout and stderr

	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and its output is complete
}

// Option adjusts Start.
type Option func(*options)

type options struct {
	ready       bool
	stopTimeout time.Duration
	checkOutput func(t testing.TB, output string)
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
	return func(o *options) { o.checkOutput = check }
}

// Start runs bin in a fresh temp directory (so no stray .env is read) with
// only PATH, BIND=127.0.0.1:0, LOG_FORMAT=json and LOG_LEVEL=info in its
// environment, plus env, which may override them. It returns once the
// process has logged its "usersd listening" line, failing the test when that
// does not happen within 30s. When the test ends the process is stopped (see
// StopGracefully) and, if the test failed, its output is logged.
func Start(t testing.TB, bin string, env map[string]string, opts ...Option) *Process {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cmd := exec.Command(bin)
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "BIND=127.0.0.1:0", "LOG_FORMAT=json", "LOG_LEVEL=info"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v) // a later duplicate wins
	}
	p := &Process{Output: &SyncBuffer{}, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Output, p.Output
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t, o) })
	if err := p.waitStarted(time.Now().Add(startTimeout), o.ready); err != nil {
		t.Fatalf("usersd did not start: %v", err) // the cleanup logs its output
	}
	return p
}

// waitStarted waits for the "usersd listening" line and, when ready is set,
// for /livez and /healthz to answer 200.
func (p *Process) waitStarted(deadline time.Time, ready bool) error {
	for {
		exited := p.Exited()
		if p.Addr = listenAddr(p.Output.String()); p.Addr != "" {
			break
		}
		if exited {
			return fmt.Errorf("exited with code %d before listening", p.cmd.ProcessState.ExitCode())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no \"usersd listening\" line within %s", startTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.URL = "http://" + p.Addr
	if !ready {
		return nil
	}
	c := &http.Client{Timeout: 2 * time.Second}
	defer c.CloseIdleConnections()
	for _, path := range []string{"/livez", "/healthz"} {
		for {
			if p.Exited() {
				return errors.New("exited during start-up")
			}
			resp, err := c.Get(p.URL + path)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("GET %s not 200 within %s (last: %v)", path, startTimeout, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// listenAddr is the address of the first JSON "usersd listening" line in
// output, without its http:// prefix, or "" when there is none yet.
func listenAddr(output string) string {
	for line := range strings.SplitSeq(output, "\n") {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "usersd listening" {
			return strings.TrimPrefix(rec.Addr, "http://")
		}
	}
	return ""
}

// stop ends the process as o says, then checks and logs its output.
func (p *Process) stop(t testing.TB, o options) {
	if !p.Exited() && o.stopTimeout > 0 {
		_ = p.Signal(syscall.SIGTERM)
		if _, exited := p.Wait(o.stopTimeout); !exited {
			t.Errorf("usersd did not exit within %s of SIGTERM; killing it", o.stopTimeout)
		}
	}
	if !p.Exited() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	output := p.Output.String()
	if o.checkOutput != nil {
		o.checkOutput(t, output)
	}
	if t.Failed() {
		t.Logf("usersd output (%s):\n%s", cmp.Or(p.Addr, "not listening"), output)
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits up to d for the process to exit and returns its exit code (-1
// when a signal ended it); exited is false when it is still running after d.
func (p *Process) Wait(d time.Duration) (code int, exited bool) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return 0, false
	}
}

// SyncBuffer is a bytes.Buffer that may be written and read concurrently.
// Its zero value is empty and ready to use.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends b to the buffer; it never fails.
func (s *SyncBuffer) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(b)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
