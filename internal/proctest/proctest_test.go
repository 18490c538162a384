package proctest

import (
	"errors"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

func sh(script string) Command { return Command{Path: "/bin/sh", Args: []string{"-c", script}} }

func TestRunCapturesOutputAndExit(t *testing.T) {
	p := Run(t, sh("echo one; echo two >&2; exit 3"))
	code, exited := p.Wait(10 * time.Second)
	if !exited || code != 3 {
		t.Fatalf("exited=%v code=%d, want exit 3", exited, code)
	}
	var texts []string
	for _, ln := range p.Output.Lines() {
		texts = append(texts, ln.Text)
		if ln.At.Before(p.Started()) {
			t.Errorf("line %q stamped %s, before the start (%s)", ln.Text, ln.At, p.Started())
		}
	}
	if !slices.Equal(texts, []string{"one", "two"}) {
		t.Errorf("lines %q, want one and two", texts)
	}

	again := p.Restart(t)
	if again.Name != "sh#2" {
		t.Errorf("restart named %q, want sh#2", again.Name)
	}
	if code, _ := again.Wait(10 * time.Second); code != 3 || again.Output.String() != "one\ntwo\n" {
		t.Errorf("restart: exit %d, output %q", code, again.Output.String())
	}
}

func TestStop(t *testing.T) {
	graceful := Run(t, sh("trap 'exit 0' TERM; echo up; while :; do sleep 0.05; done"))
	waitLine(t, graceful)
	if !graceful.Stop(syscall.SIGTERM, 10*time.Second) {
		t.Error("a process that exits on SIGTERM was killed")
	}
	stubborn := Run(t, sh("trap '' TERM; echo up; while :; do sleep 0.05; done"))
	waitLine(t, stubborn)
	if stubborn.Stop(syscall.SIGTERM, 200*time.Millisecond) {
		t.Error("a process that ignores SIGTERM exited by itself")
	}
	if code, exited := stubborn.Wait(0); !exited || code != -1 {
		t.Errorf("after Stop: exited=%v code=%d, want killed", exited, code)
	}
}

// waitLine waits for p's first line: a shell that has not yet set its trap
// would die of SIGTERM.
func waitLine(t *testing.T, p *Process) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(p.Output.Lines()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s wrote nothing", p.Name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExec(t *testing.T) {
	if out, err := Exec(sh("echo ok"), 10*time.Second); err != nil || out != "ok\n" {
		t.Errorf("Exec(echo ok) = %q, %v", out, err)
	}
	var exit *exec.ExitError
	if out, err := Exec(sh("echo no >&2; exit 2"), 10*time.Second); !errors.As(err, &exit) || exit.ExitCode() != 2 || out != "no\n" {
		t.Errorf("Exec(exit 2) = %q, %v; want exit status 2", out, err)
	}
	start := time.Now()
	// exec: a sleep left behind by the killed shell would hold the output
	// open for outputGrace.
	if _, err := Exec(sh("exec sleep 10"), 100*time.Millisecond); err == nil || errors.As(err, &exit) {
		t.Errorf("Exec(sleep 10) with a 100ms timeout: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the timed-out Exec took %s", d)
	}
}

func TestSyncBufferLines(t *testing.T) {
	var b SyncBuffer
	for _, s := range []string{"a", "b\nc", "\n", "partial"} {
		_, _ = b.Write([]byte(s))
	}
	var texts []string
	for _, ln := range b.Lines() {
		texts = append(texts, ln.Text)
	}
	if !slices.Equal(texts, []string{"ab", "c"}) || b.String() != "ab\nc\npartial" {
		t.Errorf("lines %q, string %q", texts, b.String())
	}
	if got := b.Tail(2); got != "c\npartial" {
		t.Errorf("Tail(2) = %q", got)
	}
}
