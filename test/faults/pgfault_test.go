//go:build faults

package faults

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/internal/smtptest"
)

// Outage parameters.
const (
	outage         = 10 * time.Second
	acquireTimeout = time.Second // DB_ACQUIRE_TIMEOUT of the outage tests
	recoverWithin  = 5 * time.Second
)

// TestPostgresOutage stops PostgreSQL under a steady load for 10 seconds,
// by a fast shutdown and by kill -9 of the postmaster, then starts it again.
// During the outage every call fails fast with unavailable / 503 and health
// is NOT_SERVING; within 5 seconds of PostgreSQL accepting connections
// usersd serves again, without a restart; every committed user has its
// welcome job, and River completes them all.
func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"fast", "kill9"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			testOutage(t, mode)
		})
	}
}

func testOutage(t *testing.T, mode string) {
	c := dbtest.NewCluster(t, dbtest.Durable())
	dbURL := c.URL("usersd")
	// Welcome mail goes to an SMTP server that takes a while to accept it,
	// so that jobs are in the middle of their work when PostgreSQL goes.
	mail := smtptest.New(t)
	mail.Delay(50 * time.Millisecond)
	u := startUsersd(t, dbURL, map[string]string{
		"DB_ACQUIRE_TIMEOUT": acquireTimeout.String(),
		"REQUEST_TIMEOUT":    "5s",
		"DB_MAX_CONNS":       "16",
		"RIVER_WORKERS":      "8",
		"SMTP_URL":           "smtp://" + mail.Addr,
	})

	l := startLoad(t, loadAPIs(t, u.URL), 6, 50*time.Millisecond, 15*time.Second, 2*time.Minute)
	h := startHealthLog(t, u.URL, 200*time.Millisecond, 2*time.Minute)
	time.Sleep(2 * time.Second)

	stopBegan := time.Now()
	switch mode {
	case "fast":
		c.Stop("fast")
	case "kill9":
		c.Kill9()
	}
	down := time.Now()
	t.Logf("PostgreSQL %s-stopped in %s", mode, down.Sub(stopBegan).Round(time.Millisecond))
	time.Sleep(outage)
	restartBegan := time.Now()
	c.Start() // pg_ctl -w: returns once PostgreSQL accepts connections
	up := time.Now()
	t.Logf("PostgreSQL restarted in %s", up.Sub(restartBegan).Round(time.Millisecond))
	time.Sleep(recoverWithin + 3*time.Second)
	l.Stop()
	h.Stop()

	calls := l.Snapshot()
	checkNoServerFaults(t, calls)

	var before, during, after, recovered int
	var firstOK time.Time
	for _, cl := range calls {
		switch {
		case cl.End.Before(stopBegan):
			before++
			if !cl.Result.ok() {
				t.Errorf("before the outage: %v", cl)
			}
		case cl.Start.After(down) && cl.End.Before(restartBegan):
			// PostgreSQL was down for the whole call.
			during++
			if cl.Result.code != connect.CodeUnavailable || !cl.Result.wire {
				t.Errorf("during the outage: %v, want unavailable from the server", cl)
			}
			if cl.Took() > acquireTimeout+1500*time.Millisecond {
				t.Errorf("during the outage a call hung for %s (DB_ACQUIRE_TIMEOUT is %s): %v", cl.Took(), acquireTimeout, cl)
			}
		case cl.Start.Before(down) && cl.End.After(stopBegan):
			// In flight as PostgreSQL went away: success or unavailable.
			if !cl.Result.ok() && cl.Result.code != connect.CodeUnavailable {
				t.Errorf("in flight at the stop: %v, want success or unavailable", cl)
			}
			if cl.End.After(down.Add(acquireTimeout + 5*time.Second)) {
				t.Errorf("in flight at the stop, ended long after it: %v", cl)
			}
		case cl.Start.After(up):
			after++
			if cl.Result.ok() && (firstOK.IsZero() || cl.End.Before(firstOK)) {
				firstOK = cl.End
			}
			if cl.Start.After(up.Add(recoverWithin)) {
				recovered++
				if !cl.Result.ok() {
					t.Errorf("%s after PostgreSQL came back: %v", cl.Start.Sub(up).Round(time.Millisecond), cl)
				}
			}
		}
	}
	t.Logf("calls: %d before, %d during the outage, %d after (first success %s after PostgreSQL was up)",
		before, during, after, firstOK.Sub(up).Round(time.Millisecond))
	if before < 10 || during < 20 || recovered < 10 {
		t.Errorf("too little load to judge: %d calls before, %d during, %d after recovery", before, during, recovered)
	}
	if firstOK.IsZero() || firstOK.Sub(up) > recoverWithin {
		t.Errorf("usersd did not serve again within %s of PostgreSQL accepting connections (first success: %v)", recoverWithin, firstOK)
	}

	var downProbes, upProbes int
	for _, p := range h.Snapshot() {
		switch {
		case p.Start.After(down.Add(500*time.Millisecond)) && p.End.Before(restartBegan):
			downProbes++
			if !p.Result.notServing() {
				t.Errorf("health during the outage at %s: /healthz %d, gRPC %v; want 503 and NOT_SERVING", p.Start.Format("15:04:05.000"), p.Result.healthz, p.Result.grpc)
			}
			if p.Took() > 4*time.Second {
				t.Errorf("health probe during the outage took %s", p.Took())
			}
		case p.Start.After(up.Add(recoverWithin)):
			upProbes++
			if !p.Result.serving() {
				t.Errorf("health %s after PostgreSQL came back: /healthz %d, gRPC %v; want 200 and SERVING", p.Start.Sub(up).Round(time.Millisecond), p.Result.healthz, p.Result.grpc)
			}
		}
	}
	if downProbes < 5 || upProbes < 3 {
		t.Errorf("too few health probes: %d during the outage, %d after recovery", downProbes, upProbes)
	}

	checkWelcomeJobs(t, dbURL, calls, 60*time.Second)
}

// checkWelcomeJobs: every user a client was told about exists, every
// committed user has exactly one welcome_email job, and River completes them
// all within wait.
func checkWelcomeJobs(t *testing.T, dbURL string, calls []call, wait time.Duration) {
	t.Helper()
	conn := dbtest.Connect(t, dbURL)
	ctx := t.Context()

	acked := map[string]bool{}
	for _, cl := range calls {
		if cl.Op == "create" && cl.Result.ok() {
			acked[cl.Result.user.Id] = true
		}
	}
	ids, err := queryStrings(ctx, conn, "SELECT id::text FROM users")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, id := range ids {
		have[id] = true
	}
	for id := range acked {
		if !have[id] {
			t.Errorf("user %s was acknowledged to a client but is not in the database", id)
		}
	}

	missing, err := queryStrings(ctx, conn, `SELECT u.id::text FROM users u WHERE (SELECT count(*) FROM river_job j
		WHERE j.kind = 'welcome_email' AND j.args->>'user_id' = u.id::text) <> 1`)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d users do not have exactly one welcome_email job, e.g. %v", len(missing), len(ids), missing[:min(5, len(missing))])
	}
	orphans, err := queryStrings(ctx, conn, `SELECT j.args->>'user_id' FROM river_job j
		WHERE j.kind = 'welcome_email' AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id::text = j.args->>'user_id')`)
	if err != nil {
		t.Fatal(err)
	}
	if len(orphans) > 0 {
		t.Errorf("%d welcome jobs for users that were never committed, e.g. %v", len(orphans), orphans[:min(5, len(orphans))])
	}

	start := time.Now()
	var pending []string
	for {
		pending, err = queryStrings(ctx, conn, `SELECT j.id || ' ' || j.state || ' attempt ' || j.attempt || ' ' || coalesce(j.errors[array_length(j.errors, 1)]->>'error', '')
			FROM river_job j WHERE j.kind = 'welcome_email' AND j.state <> 'completed' ORDER BY j.id`)
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) == 0 || time.Since(start) > wait {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if len(pending) > 0 {
		t.Errorf("%d welcome jobs not completed %s after the outage, e.g.:\n%v", len(pending), wait, pending[:min(10, len(pending))])
	} else {
		t.Logf("all %d welcome jobs completed %s after the load stopped", len(ids), time.Since(start).Round(time.Millisecond))
	}
	var retried int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'welcome_email' AND attempt > 1`).Scan(&retried); err == nil {
		t.Logf("%d welcome jobs needed more than one attempt", retried)
	}
}

func queryStrings(ctx context.Context, conn *pgx.Conn, sql string, args ...any) ([]string, error) {
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
