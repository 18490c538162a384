//go:build faults

package faults

import (
	"context"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/acme/usersd/internal/dbtest"
)

const shutdownTimeout = 10 * time.Second

// TestShutdown sends SIGTERM while a steady load runs.
func TestShutdown(t *testing.T) {
	t.Parallel()
	t.Run("in_flight_finish", func(t *testing.T) {
		t.Parallel()
		testShutdownInFlight(t)
	})
	t.Run("drain", func(t *testing.T) {
		t.Parallel()
		testShutdownDrain(t)
	})
}

// testShutdownInFlight: with no drain, SIGTERM stops accepting at once, every
// call accepted before the signal completes successfully (they are held in
// flight by a locked table when the signal comes), and usersd exits 0 inside
// SHUTDOWN_TIMEOUT.
func testShutdownInFlight(t *testing.T) {
	dbURL := dbtest.URL(t)
	u := startUsersd(t, dbURL, map[string]string{
		"SHUTDOWN_DRAIN":   "0s",
		"SHUTDOWN_TIMEOUT": shutdownTimeout.String(),
		"DB_MAX_CONNS":     "16",
		"RIVER_WORKERS":    "2",
	})
	l := startLoad(t, loadAPIs(t, u.URL), 6, 10*time.Millisecond, 30*time.Second, time.Minute)
	time.Sleep(1500 * time.Millisecond)

	// Hold the load's calls in flight: they block on the locked table.
	locker := dbtest.Connect(t, dbURL)
	monitor := dbtest.Connect(t, dbURL)
	tx := dbtest.LockUsers(t, locker)
	waitFor(t, 5*time.Second, "the load's calls to block on the lock", func() bool {
		var n int
		_ = monitor.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ~* '\musers\M'`).Scan(&n)
		return n >= 6
	})

	sig := time.Now()
	if err := u.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if u.Exited() {
		t.Fatalf("usersd exited with calls in flight")
	}
	// New connections are refused.
	if c, err := net.DialTimeout("tcp", u.Addr, time.Second); err == nil {
		c.Close()
		t.Errorf("a new connection was accepted after SIGTERM")
	}
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	if resp, err := fresh.Get(u.URL + "/livez"); err == nil {
		resp.Body.Close()
		t.Errorf("a new request was served after SIGTERM: %s", resp.Status)
	}

	time.Sleep(700 * time.Millisecond)
	released := time.Now()
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	code, ok := u.Wait(shutdownTimeout + 2*time.Second)
	exited := time.Now()
	l.Stop()
	switch {
	case !ok:
		t.Fatalf("usersd still running %s after SIGTERM", time.Since(sig))
	case code != 0:
		t.Errorf("usersd exited %d after SIGTERM, want 0", code)
	case exited.Sub(sig) > shutdownTimeout:
		t.Errorf("usersd took %s to exit, SHUTDOWN_TIMEOUT is %s", exited.Sub(sig), shutdownTimeout)
	}
	t.Logf("usersd exited %s after SIGTERM, %s after the in-flight calls were released",
		exited.Sub(sig).Round(time.Millisecond), exited.Sub(released).Round(time.Millisecond))
	if !strings.Contains(u.Output.String(), "shutdown complete") {
		t.Errorf("usersd did not log \"shutdown complete\"")
	}

	calls := l.Snapshot()
	checkNoServerFaults(t, calls)
	var accepted, refused int
	for _, c := range calls {
		switch {
		case c.Start.Before(sig):
			accepted++
			if !c.Result.ok() {
				t.Errorf("accepted before SIGTERM, yet failed: %v", c)
			}
		case c.Start.After(sig.Add(200 * time.Millisecond)):
			refused++
			if c.Result.ok() || c.Result.wire {
				t.Errorf("started %s after SIGTERM, want refused at the transport: %v", c.Start.Sub(sig), c)
			}
		default:
			if !c.Result.ok() && c.Result.wire {
				t.Errorf("started at SIGTERM, answered with an error instead of served or refused: %v", c)
			}
		}
	}
	t.Logf("%d calls before SIGTERM, %d after", accepted, refused)
	checkAcknowledged(t, dbURL, calls)
}

// testShutdownDrain: during SHUTDOWN_DRAIN readiness (/healthz and gRPC
// health) reports 503 / NOT_SERVING while calls, on old and new connections,
// still succeed; then usersd exits 0 inside SHUTDOWN_TIMEOUT.
func testShutdownDrain(t *testing.T) {
	const drain = 3 * time.Second
	dbURL := dbtest.URL(t)
	u := startUsersd(t, dbURL, map[string]string{
		"SHUTDOWN_DRAIN":   drain.String(),
		"SHUTDOWN_TIMEOUT": shutdownTimeout.String(),
		"DB_MAX_CONNS":     "8",
		"RIVER_WORKERS":    "2",
	})
	l := startLoad(t, loadAPIs(t, u.URL), 4, 20*time.Millisecond, 10*time.Second, time.Minute)
	h := startHealthLog(t, u.URL, 100*time.Millisecond, time.Minute)
	time.Sleep(time.Second)

	sig := time.Now()
	if err := u.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connections still work during the drain.
	time.Sleep(drain / 3)
	for _, a := range restAPIs(t, u.URL)[:1] {
		fresh := a
		fresh.hc = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		if r := fresh.create(ctx, newUser("drain-fresh")); !r.ok() {
			t.Errorf("a call on a new connection during the drain failed: %v", r)
		}
		cancel()
	}
	code, ok := u.Wait(shutdownTimeout + 2*time.Second)
	exited := time.Now()
	l.Stop()
	h.Stop()
	switch {
	case !ok:
		t.Fatalf("usersd still running %s after SIGTERM", time.Since(sig))
	case code != 0:
		t.Errorf("usersd exited %d after SIGTERM, want 0", code)
	case exited.Sub(sig) < drain:
		t.Errorf("usersd exited %s after SIGTERM, before SHUTDOWN_DRAIN (%s) was over", exited.Sub(sig), drain)
	case exited.Sub(sig) > shutdownTimeout:
		t.Errorf("usersd took %s to exit, SHUTDOWN_TIMEOUT is %s", exited.Sub(sig), shutdownTimeout)
	}

	var before, during int
	for _, p := range h.Snapshot() {
		switch {
		case p.End.Before(sig):
			before++
			if !p.Result.serving() {
				t.Errorf("health before SIGTERM: /healthz %d, gRPC %v", p.Result.healthz, p.Result.grpc)
			}
		case p.Start.After(sig.Add(100*time.Millisecond)) && p.End.Before(sig.Add(drain-200*time.Millisecond)):
			during++
			if !p.Result.notServing() {
				t.Errorf("health %s into the drain: /healthz %d, gRPC %v; want 503 and NOT_SERVING",
					p.Start.Sub(sig).Round(time.Millisecond), p.Result.healthz, p.Result.grpc)
			}
		}
	}
	if before < 3 || during < 10 {
		t.Errorf("too few health probes: %d before SIGTERM, %d during the drain", before, during)
	}

	calls := l.Snapshot()
	checkNoServerFaults(t, calls)
	var served int
	for _, c := range calls {
		if c.Start.Before(sig.Add(drain - 200*time.Millisecond)) {
			served++
			if !c.Result.ok() {
				t.Errorf("%s into the drain: %v, want success", c.Start.Sub(sig).Round(time.Millisecond), c)
			}
		}
	}
	if served < 20 {
		t.Errorf("only %d calls before the drain ended", served)
	}
	checkAcknowledged(t, dbURL, calls)
}

// checkAcknowledged: every user a client was told about is committed, with
// its welcome job.
func checkAcknowledged(t *testing.T, dbURL string, calls []call) {
	t.Helper()
	conn := dbtest.Connect(t, dbURL)
	var ids []string
	for _, c := range calls {
		if c.Op == "create" && c.Result.ok() {
			ids = append(ids, c.Result.user.Id)
		}
	}
	var users, jobs int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM users WHERE id::text = ANY($1)", ids).Scan(&users); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM river_job WHERE kind = 'welcome_email' AND args->>'user_id' = ANY($1)", ids).Scan(&jobs); err != nil {
		t.Fatal(err)
	}
	if users != len(ids) || jobs != len(ids) {
		t.Errorf("%d creates acknowledged, but %d of those users and %d welcome jobs committed", len(ids), users, jobs)
	}
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
