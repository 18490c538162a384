//go:build !nodb

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/internal/devissuer"
	"github.com/acme/usersd/internal/proctest"
	"github.com/acme/usersd/internal/smtptest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds usersd once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "usersd-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "usersd")
		out, err := proctest.Exec(proctest.Command{Path: "go", Args: []string{"build", "-o", binPath, "."}}, 5*time.Minute)
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// withAuthOff turns authentication and the client IP limit off, on
// purpose: for the tests of shutdown, jobs and telemetry, which are about
// something else (TestBinaryAuthentication runs the binary with it on).
func withAuthOff(env map[string]string) map[string]string {
	env["AUTH_DISABLED"] = "true"
	env["RATE_LIMIT_IP_RPS"] = "0"
	return env
}

// wait returns usersd's exit code, failing after limit.
func wait(t *testing.T, p *proctest.Process, limit time.Duration) int {
	t.Helper()
	code, exited := p.Wait(limit)
	if !exited {
		t.Fatalf("usersd still running %v after SIGTERM", limit)
	}
	return code
}

// TestShutdownDrainsInFlight: SIGTERM while slow requests are in flight lets
// them finish, refuses new connections, and exits 0 within SHUTDOWN_TIMEOUT.
func TestShutdownDrainsInFlight(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.URL(t)
	p := proctest.Start(t, binary(t), withAuthOff(map[string]string{"DATABASE_URL": dbURL, "SHUTDOWN_TIMEOUT": "10s", "RIVER_WORKERS": "1"}))
	base := p.URL
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 20 * time.Second}
	defer hc.CloseIdleConnections()

	resp, err := hc.Post(base+"/users", "application/json", strings.NewReader(`{"email":"slow@example.com","full_name":"Slow"}`))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %v %v", resp, err)
	}
	var u struct{ ID string }
	_ = json.NewDecoder(resp.Body).Decode(&u)
	resp.Body.Close()

	// Make reads slow: hold a lock that GetUser must wait for.
	ctx := t.Context()
	locker := dbtest.Connect(t, dbURL)
	tx := dbtest.LockUsers(t, locker)

	const inflight = 5
	results := make(chan error, inflight)
	for range inflight {
		go func() {
			resp, err := hc.Get(base + "/users/" + u.ID)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			results <- err
		}()
	}
	dbtest.WaitLockWaiters(t, dbURL, inflight, 10*time.Second)

	sent := time.Now()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connections are refused once the listener is closed.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("new connections still accepted 5s after SIGTERM")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for range inflight {
		if err := <-results; err != nil {
			t.Errorf("in-flight request failed: %v", err)
		}
	}
	if code := wait(t, p, 10*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if d := time.Since(sent); d > 10*time.Second {
		t.Errorf("shutdown took %v, over SHUTDOWN_TIMEOUT", d)
	}
	if !strings.Contains(p.Output.String(), `"msg":"shutdown complete"`) {
		t.Error("no shutdown complete line in the log")
	}
}

// TestShutdownKeepsRunningJob: SIGTERM while the welcome mail is being sent.
// With time to spare the job finishes; without, it is cancelled and left
// for a retry. Either way it is not lost.
func TestShutdownKeepsRunningJob(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		timeout  string
		smtpWait time.Duration
		want     []string // acceptable job states afterwards
	}{
		{"finishes", "10s", 2 * time.Second, []string{"completed"}},
		{"cancelled and retried later", "2s", 15 * time.Second, []string{"retryable", "available"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dbURL := dbtest.URL(t)
			mail := smtptest.New(t)
			mail.Delay(tc.smtpWait)
			p := proctest.Start(t, binary(t), withAuthOff(map[string]string{
				"DATABASE_URL": dbURL, "SHUTDOWN_TIMEOUT": tc.timeout, "SMTP_URL": "smtp://" + mail.Addr,
			}))
			createAwaitingMail(t, p, mail, "job@example.com", "the welcome job did not start")
			if err := p.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if code := wait(t, p, 20*time.Second); code != 0 {
				t.Errorf("exit code %d, want 0", code)
			}
			conn := dbtest.Connect(t, dbURL)
			var state string
			if err := conn.QueryRow(t.Context(), `SELECT state FROM river_job WHERE kind = 'welcome_email'`).Scan(&state); err != nil {
				t.Fatal(err)
			}
			ok := false
			for _, w := range tc.want {
				ok = ok || state == w
			}
			if !ok {
				t.Errorf("job state %q after shutdown, want one of %v", state, tc.want)
			}
			if state == "completed" && len(mail.Messages()) != 1 {
				t.Errorf("completed job but %d mails", len(mail.Messages()))
			}
		})
	}
}

// TestRiverUI: mounted only with RIVER_UI_PASSWORD, and behind basic auth.
func TestRiverUI(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.URL(t)
	get := func(p *proctest.Process, user, pass string) int {
		req, _ := http.NewRequest(http.MethodGet, p.URL+"/riverui/", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Bearer authentication on: River UI is outside it, behind its own basic auth.
	iss := devissuer.StartTest(t, "usersd", "RS256")
	off := proctest.Start(t, binary(t), map[string]string{"DATABASE_URL": dbURL, "RIVER_WORKERS": "0", "AUTH_ISSUER": iss.URL(), "AUTH_AUDIENCE": "usersd"})
	if code := get(off, "admin", "x"); code != http.StatusNotFound {
		t.Errorf("without RIVER_UI_PASSWORD: /riverui/ = %d, want 404", code)
	}
	on := proctest.Start(t, binary(t), map[string]string{"DATABASE_URL": dbURL, "RIVER_WORKERS": "0", "RIVER_UI_PASSWORD": "s3cret", "AUTH_ISSUER": iss.URL(), "AUTH_AUDIENCE": "usersd"})
	for _, tc := range []struct {
		user, pass string
		want       int
	}{{"", "", 401}, {"admin", "wrong", 401}, {"root", "s3cret", 401}, {"admin", "s3cret", 200}} {
		if code := get(on, tc.user, tc.pass); code != tc.want {
			t.Errorf("user %q pass %q: /riverui/ = %d, want %d", tc.user, tc.pass, code, tc.want)
		}
	}
}

// TestOTLPExport runs the binary as `make run` would with an OTLP/HTTP
// collector, and checks the collector receives one trace per CreateUser
// holding the RPC, SQL and job spans.
func TestOTLPExport(t *testing.T) {
	t.Parallel()
	c := startCollector(t)
	p := proctest.Start(t, binary(t), withAuthOff(map[string]string{
		"DATABASE_URL":                dbtest.URL(t),
		"OTEL_TRACES_EXPORTER":        "otlp",
		"OTEL_EXPORTER_OTLP_ENDPOINT": c.URL,
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		"OTEL_BSP_SCHEDULE_DELAY":     "100",
	}))
	resp, err := http.Post(p.URL+"/users.v1.UserService/CreateUser", "application/json",
		strings.NewReader(`{"email":"otlp@example.com","fullName":"Otlp"}`))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("create: %v %v", resp, err)
	}
	resp.Body.Close()

	deadline := time.Now().Add(15 * time.Second)
	for {
		var found []string
		spans := c.traces()
		for _, names := range spans {
			if slices.Contains(names, "users.v1.UserService/CreateUser") && slices.Contains(names, "INSERT") &&
				slices.Contains(names, "river.work") {
				found = names
			}
		}
		if found != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no trace with the RPC, SQL and job spans; collector got %v", spans)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := wait(t, p, 20*time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// TestHealthcheckCommand: `usersd healthcheck` exits 0 against a ready
// usersd on BIND (0.0.0.0 means ask on loopback) and 1 with one line
// otherwise.
func TestHealthcheckCommand(t *testing.T) {
	t.Parallel()
	p := proctest.Start(t, binary(t), withAuthOff(map[string]string{"DATABASE_URL": dbtest.URL(t), "RIVER_WORKERS": "0"}), proctest.WaitReady())
	_, port, _ := net.SplitHostPort(p.Addr)
	check := func(bind string) (int, string) {
		out, err := proctest.Exec(proctest.Command{Path: binary(t), Args: []string{"healthcheck"}, Dir: t.TempDir(), Env: []string{"BIND=" + bind}}, time.Minute)
		var exit *exec.ExitError
		switch {
		case err == nil:
			return 0, out
		case errors.As(err, &exit):
			return exit.ExitCode(), out
		}
		t.Fatalf("usersd healthcheck: %v", err)
		return 0, ""
	}
	for _, bind := range []string{p.Addr, "0.0.0.0:" + port} {
		if code, out := check(bind); code != 0 {
			t.Errorf("healthcheck BIND=%s: exit %d, %q; want 0", bind, code, out)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	if code, out := check(closed); code != 1 || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "healthcheck") {
		t.Errorf("healthcheck of nothing listening: exit %d, %q; want 1 and one line", code, out)
	}
}

// TestMigrateDatabaseURL: migrations go to MIGRATE_DATABASE_URL when it is
// set (here an address where nothing listens, so start-up fails on it),
// while queries use DATABASE_URL; RIVER_POLL_ONLY=true still works jobs.
func TestMigrateDatabaseURL(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.URL(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := "postgres://u@" + ln.Addr().String() + "/db?connect_timeout=2"
	ln.Close()
	migrate := proctest.Command{Path: binary(t), Args: []string{"migrate"}, Dir: t.TempDir(), Env: []string{"DATABASE_URL=" + dbURL, "MIGRATE_DATABASE_URL=" + nowhere}}
	if out, err := proctest.Exec(migrate, time.Minute); err == nil {
		t.Errorf("usersd migrate with an unreachable MIGRATE_DATABASE_URL succeeded: %s", out)
	}
	mail := smtptest.New(t)
	p := proctest.Start(t, binary(t), withAuthOff(map[string]string{
		"DATABASE_URL": dbURL, "MIGRATE_DATABASE_URL": dbURL, "RIVER_POLL_ONLY": "true", "SMTP_URL": "smtp://" + mail.Addr,
	}), proctest.WaitReady())
	createAwaitingMail(t, p, mail, "poll@example.com", "no welcome mail with RIVER_POLL_ONLY=true")
}

// createAwaitingMail creates a user over REST and waits up to 15s for its
// welcome mail to reach mail, failing with noMail when it does not.
func createAwaitingMail(t *testing.T, p *proctest.Process, mail *smtptest.Server, email, noMail string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email, "full_name": "Mail Test"})
	resp, err := http.Post(p.URL+"/users", "application/json", bytes.NewReader(body))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %v %v", resp, err)
	}
	resp.Body.Close()
	select {
	case <-mail.Arrived():
	case <-time.After(15 * time.Second):
		t.Fatal(noMail)
	}
}
