package proctest

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// startTimeout bounds how long Start waits for the process to listen (and,
// with WaitReady, to be ready).
const startTimeout = 30 * time.Second

// Usersd is the command Start runs: bin in a fresh temp directory (so no
// stray .env is read) with only PATH, BIND=127.0.0.1:0, LOG_FORMAT=json and
// LOG_LEVEL=info in its environment, plus env, which may override them.
func Usersd(t testing.TB, bin string, env map[string]string) Command {
	t.Helper()
	full := map[string]string{"PATH": os.Getenv("PATH"), "BIND": "127.0.0.1:0", "LOG_FORMAT": "json", "LOG_LEVEL": "info"}
	maps.Copy(full, env)
	c := Command{Path: bin, Dir: t.TempDir()}
	for _, k := range slices.Sorted(maps.Keys(full)) {
		c.Env = append(c.Env, k+"="+full[k])
	}
	return c
}

// Start runs usersd (see Usersd) and returns once the process has logged
// its "usersd listening" line, failing the test when that does not happen
// within 30s. When the test ends the process is stopped (see
// StopGracefully) and, if the test failed, its output is logged.
func Start(t testing.TB, bin string, env map[string]string, opts ...Option) *Process {
	t.Helper()
	p := Run(t, Usersd(t, bin, env), opts...)
	wait := p.WaitListening
	if p.opts.ready {
		wait = p.WaitReady
	}
	if err := wait(startTimeout); err != nil {
		t.Fatalf("%s did not start: %v", p.Name, err) // the cleanup logs its output
	}
	return p
}

// WaitListening waits up to d for usersd's JSON "usersd listening" line and
// sets Addr and URL from it.
func (p *Process) WaitListening(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		exited := p.Exited()
		if recs := p.LogRecords("usersd listening"); len(recs) > 0 {
			addr, _ := recs[0]["addr"].(string)
			p.Addr = strings.TrimPrefix(addr, "http://")
			p.URL = "http://" + p.Addr
			return nil
		}
		if exited {
			return fmt.Errorf("exited with code %d before listening", p.cmd.ProcessState.ExitCode())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no \"usersd listening\" line within %s", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitReady waits, up to d in all, for the "usersd listening" line and then
// for GET /livez and GET /healthz to answer 200.
func (p *Process) WaitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	if err := p.WaitListening(d); err != nil {
		return err
	}
	running := func() error {
		if p.Exited() {
			return errors.New("exited during start-up")
		}
		return nil
	}
	for _, path := range []string{"/livez", "/healthz"} {
		if err := WaitOK(p.URL+path, time.Until(deadline), running); err != nil {
			return err
		}
	}
	return nil
}

// LogRecords returns the process's JSON log lines whose msg is msg.
func (p *Process) LogRecords(msg string) []map[string]any {
	var out []map[string]any
	for _, ln := range p.Output.Lines() {
		if !strings.Contains(ln.Text, msg) {
			continue
		}
		var rec map[string]any
		if json.Unmarshal([]byte(ln.Text), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// NoServerErrors makes the end of the test fail it when usersd logged a
// panic or answered any request with an internal error. A client does not
// always see the server's answer (its own deadline may pass first), so the
// suites check the server's side too: no error may map to internal.
func NoServerErrors() Option {
	return func(o *options) { o.checks = append(o.checks, checkServerErrors) }
}

func checkServerErrors(t testing.TB, p *Process) {
	var panics, internal []string
	// All of the output: a panic's last line may lack its newline.
	for ln := range strings.SplitSeq(p.Output.String(), "\n") {
		if strings.Contains(ln, "panic") {
			panics = append(panics, ln)
		}
		if strings.Contains(ln, `"msg":"internal error"`) {
			internal = append(internal, ln)
		}
	}
	if len(panics) > 0 {
		t.Errorf("%s logged a panic: %s", p.Name, panics[0])
	}
	if len(internal) > 0 {
		t.Errorf("%s answered %d requests with an internal error, the first: %s", p.Name, len(internal), internal[0])
	}
}
