//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/internal/loadtest"
	"github.com/acme/usersd/internal/proctest"
	"github.com/acme/usersd/migrations"
)

const (
	// loadInterval paces each load worker (one per entry point, ten in all)
	// to 30 calls a second: 300 requests a second through HAProxy, 120 of
	// them creates, a steady load that a 2-core machine carries next to three
	// replicas, HAProxy, PgBouncer and PostgreSQL.
	loadInterval = 33 * time.Millisecond
	// maxDownAfterKill is how soon HAProxy must stop sending to a replica
	// that was killed.
	maxDownAfterKill = 3 * time.Second
	// maxFailAfterKill bounds when a request that failed because of the kill
	// may end: HAProxy learns of the dead connection at once.
	maxFailAfterKill = 2 * time.Second
	// queuePollInterval is how often River clients in poll-only mode read a
	// queue's settings, a pause among them (River's default).
	queuePollInterval = 2 * time.Second
)

// TestCluster runs the phases in order on one cluster; each leaves the three
// replicas serving. The welcome mail check at the end covers every user the
// earlier phases created.
func TestCluster(t *testing.T) {
	begin := time.Now()
	c := newCluster(t)
	t.Logf("PgBouncer, HAProxy, SMTP sink and issuer up in %s", time.Since(begin).Round(time.Millisecond))
	pools := startPoolSampler(t, c)

	var all []call // every call of every phase
	phase := func(name string, f func(t *testing.T) []call) bool {
		pools.reset()
		start := time.Now()
		ok := t.Run(name, func(t *testing.T) { all = append(all, f(t)...) })
		t.Logf("%s: %s in %s; %s", name, map[bool]string{true: "PASS", false: "FAIL"}[ok], time.Since(start).Round(100*time.Millisecond), pools.report())
		// Without it every later phase fails, the last after waiting out its
		// bound, and the cause is buried in their errors.
		if c.bouncer.Exited() {
			t.Fatalf("PgBouncer exited during %s:\n%s", name, c.bouncer.Output.Tail(8))
		}
		return ok
	}
	if !phase("start_together", func(t *testing.T) []call { return testStartTogether(t, c) }) {
		t.FailNow() // nothing else can run
	}
	phase("rolling_restart", func(t *testing.T) []call { return testRollingRestart(t, c) })
	phase("kill9", func(t *testing.T) []call { return testKill9(t, c) })
	phase("welcome_mail_exactly_once", func(t *testing.T) []call { testWelcomeMail(t, c, all); return nil })
	t.Logf("suite: %s", time.Since(begin).Round(100*time.Millisecond))
}

// testStartTogether starts the three replicas at the same moment on the
// empty database: each migration (the app's and River's) must be applied by
// exactly one of them, and all three must serve, through HAProxy too.
func testStartTogether(t *testing.T, c *cluster) []call {
	start := time.Now()
	for _, r := range c.replicas {
		r.start(t)
	}
	spread := c.replicas[len(c.replicas)-1].cur().Started().Sub(c.replicas[0].cur().Started())
	var wg sync.WaitGroup
	ready := make([]time.Duration, len(c.replicas))
	for i, r := range c.replicas {
		wg.Go(func() {
			if err := r.ready(60 * time.Second); err != nil {
				t.Error(err)
			}
			ready[i] = time.Since(start)
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("3 replicas started within %s of each other; ready (listening, /healthz 200) after %v", spread.Round(time.Microsecond), roundAll(ready))

	// Each migration applied once, by whichever replica got the lock first.
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations embedded: %v", err)
	}
	conn := dbtest.Connect(t, c.db.URL)
	var riverVersions []int
	rows, err := conn.Query(t.Context(), "SELECT version FROM river_migration ORDER BY version")
	if err == nil {
		riverVersions, err = pgx.CollectRows(rows, pgx.RowTo[int])
	}
	if err != nil || len(riverVersions) == 0 {
		t.Fatalf("river_migration: %v (%d rows)", err, len(riverVersions))
	}
	var appVersion int
	if err := conn.QueryRow(t.Context(), "SELECT version FROM schema_version").Scan(&appVersion); err != nil {
		t.Fatalf("schema_version: %v", err)
	}
	if appVersion != len(files) {
		t.Errorf("schema_version is %d, want %d (the embedded migrations)", appVersion, len(files))
	}
	appBy, riverBy := map[int][]string{}, map[int][]string{}
	for _, r := range c.replicas {
		p := r.cur()
		for _, rec := range p.LogRecords("applying migration") {
			v, _ := rec["version"].(float64)
			appBy[int(v)] = append(appBy[int(v)], p.Name)
		}
		for _, rec := range p.LogRecords("applied river migration") {
			v, _ := rec["version"].(float64)
			riverBy[int(v)] = append(riverBy[int(v)], p.Name)
		}
	}
	for v := 1; v <= len(files); v++ {
		if len(appBy[v]) != 1 {
			t.Errorf("app migration %d applied by %v, want exactly one replica", v, appBy[v])
		}
	}
	for _, v := range riverVersions {
		if len(riverBy[v]) != 1 {
			t.Errorf("River migration %d applied by %v, want exactly one replica", v, riverBy[v])
		}
	}
	if len(appBy) != len(files) || len(riverBy) != len(riverVersions) {
		t.Errorf("migrations logged: app %v, River %v; want app 1-%d and River %v once each", appBy, riverBy, len(files), riverVersions)
	}
	t.Logf("migrations: %d app and %d River migrations, each applied once (by %v)", len(files), len(riverVersions), appBy[1])

	// HAProxy takes all three in.
	for _, r := range c.replicas {
		c.haproxy.waitStatus(t, r.name, "UP", 10*time.Second)
	}
	t.Logf("HAProxy: all 3 UP %s after the start", time.Since(start).Round(time.Millisecond))

	// And all three serve through it, on every entry point.
	var calls []call
	es := entries(t, c.haproxy.url, c.token)
	for _, e := range es {
		for range 3 {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			cr := e.do(ctx, "create", "")
			calls = append(calls, cr)
			if cr.Result.err == nil {
				calls = append(calls, e.do(ctx, "get", cr.Result.userID), e.do(ctx, "list", ""))
			}
			cancel()
		}
	}
	for _, f := range loadtest.Failures(calls) {
		t.Errorf("call through HAProxy failed: %v", f)
	}
	served := map[string]int{}
	logs := c.haproxy.waitLogged(t, calls)
	for _, cl := range calls {
		served[logs[cl.Result.reqID].server]++
	}
	for _, r := range c.replicas {
		if served[r.name] == 0 {
			t.Errorf("%s served none of %d calls through HAProxy: %v", r.name, len(calls), served)
		}
	}
	t.Logf("%d calls through HAProxy over %d entry points, served by %v", len(calls), len(es), served)
	return calls
}

// testRollingRestart is a rolling deploy under a steady mixed load: each
// replica in turn gets SIGTERM, exits, and is started again, and the next
// goes only once HAProxy has taken the new one in. No request may fail.
// Meanwhile watchers and a webhook follow the change feed through HAProxy
// from where it stood before the load (feed_test.go): each must end up
// with exactly the changes the load committed.
func testRollingRestart(t *testing.T, c *cluster) []call {
	feed := startFeedCheck(t, c)
	l := startLoad(t, entries(t, c.haproxy.url, c.token), loadInterval)
	time.Sleep(2 * time.Second)
	for _, r := range c.replicas {
		p := r.cur()
		unguard := feed.guardDeliveries(t, p)
		sig := time.Now()
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		code, ok := p.Wait(shutdownTimeout + 5*time.Second)
		exited := time.Now()
		unguard()
		if !ok {
			t.Fatalf("%s still running %s after SIGTERM", p.Name, time.Since(sig))
		}
		if code != 0 {
			t.Errorf("%s exited %d after SIGTERM, want 0", p.Name, code)
		}
		// A job cancelled mid-statement sends PostgreSQL a cancel request,
		// which PgBouncer in transaction pooling may pass to another
		// client's statement.
		if n := len(p.LogRecords("jobs still running after the soft stop; cancelling them")); n > 0 {
			t.Errorf("%s cancelled running jobs at shutdown: a job outlived River's soft stop", p.Name)
		}
		down, found := c.haproxy.firstChange(r.name, "DOWN", sig)
		switch {
		case !found:
			t.Errorf("HAProxy did not mark %s DOWN before it exited", r.name)
		case down.at.After(sig.Add(shutdownDrain)):
			t.Errorf("HAProxy marked %s DOWN %s after SIGTERM: not within SHUTDOWN_DRAIN (%s), so requests reached a closing listener",
				r.name, down.at.Sub(sig).Round(time.Millisecond), shutdownDrain)
		}

		r.start(t)
		if err := r.ready(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		ready := time.Now()
		up := c.haproxy.waitStatus(t, r.name, "UP", 10*time.Second)
		t.Logf("%s: SIGTERM -> HAProxy DOWN %s (%s) -> exited %s (code %d) -> restarted, ready %s -> HAProxy UP %s later",
			r.name, down.at.Sub(sig).Round(time.Millisecond), down.reason, exited.Sub(sig).Round(time.Millisecond), code,
			ready.Sub(exited).Round(time.Millisecond), up.Sub(ready).Round(time.Millisecond))
		// Let the new process take traffic before the next one goes.
		time.Sleep(time.Second)
	}
	time.Sleep(2 * time.Second)
	l.Stop()

	calls := l.Snapshot()
	logs := c.haproxy.waitLogged(t, calls)
	fails := loadtest.Failures(calls)
	for i, f := range fails {
		if i == 20 {
			t.Errorf("... and %d more", len(fails)-20)
			break
		}
		t.Errorf("failed during the rolling restart: %v\n  HAProxy: %s", f, logText(logs, f.Result.reqID))
	}
	if len(fails) > 0 {
		t.Errorf("%d of %d calls failed during the rolling restart; want none", len(fails), len(calls))
	}
	// Nor did the client hide one by sending a request again.
	for _, rp := range replayed(calls) {
		t.Errorf("replayed by the client's transport during the rolling restart: %v", rp)
	}
	t.Logf("rolling restart: %s; %d failed; %s", loadtest.Summary(calls), len(fails), serverSummary(logs, calls))
	t.Run("change_feed", func(t *testing.T) { feed.verify(t, calls) })
	return calls
}

// testKill9 kills one replica with SIGKILL under the same load: HAProxy must
// stop sending to it within 3 s, the only failed requests must be ones it
// was handling at that instant, and it must rejoin when started again.
func testKill9(t *testing.T, c *cluster) []call {
	conn := dbtest.Connect(t, c.db.URL)
	l := startLoad(t, entries(t, c.haproxy.url, c.token), loadInterval)
	time.Sleep(2 * time.Second)

	r := c.replicas[1]
	p := r.cur()
	kill, paused := quietKill(t, c, conn, p)
	if code, ok := p.Wait(5 * time.Second); !ok || code != -1 {
		t.Fatalf("%s: after SIGKILL exited=%v code=%d", p.Name, ok, code)
	}
	// The kernel tears the process down after the signal: until it has
	// gone, its connections are open and HAProxy may still send on them.
	gone := p.ExitTime()
	var down stateChange
	deadline := time.Now().Add(10 * time.Second)
	for {
		var found bool
		if down, found = c.haproxy.firstChange(r.name, "DOWN", kill); found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("HAProxy did not mark %s DOWN within 10s of kill -9", r.name)
		}
		time.Sleep(10 * time.Millisecond)
	}
	downAfter := down.at.Sub(kill)
	if downAfter > maxDownAfterKill {
		t.Errorf("HAProxy marked %s DOWN %s after kill -9, want within %s", r.name, downAfter.Round(time.Millisecond), maxDownAfterKill)
	}
	// Load goes on, without the replica, to well past the 3 s.
	time.Sleep(time.Until(kill.Add(maxDownAfterKill + time.Second)))

	restart := time.Now()
	r.start(t)
	if err := r.ready(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	ready := time.Now()
	up := c.haproxy.waitStatus(t, r.name, "UP", 10*time.Second)
	time.Sleep(3 * time.Second)
	l.Stop()
	t.Logf("%s: kill -9 %s after the queue was paused (once it held no welcome job), process gone %s later; HAProxy DOWN %s after the kill (%s); restarted %s after the kill, ready in %s, UP %s later",
		r.name, paused.Round(time.Millisecond), gone.Sub(kill).Round(time.Microsecond), downAfter.Round(time.Millisecond), down.reason,
		restart.Sub(kill).Round(time.Millisecond), ready.Sub(restart).Round(time.Millisecond), up.Sub(ready).Round(time.Millisecond))

	calls := l.Snapshot()
	logs := c.haproxy.waitLogged(t, calls)
	fails := loadtest.Failures(calls)
	var failedCreates []string
	byOp := map[string]int{}
	var unlogged int
	for _, f := range fails {
		byOp[f.Op]++
		lg, logged := logs[f.Result.reqID]
		switch {
		case !f.Start.Before(gone):
			t.Errorf("failed, but started %s after the killed process was gone (%s after the kill): %v\n  HAProxy: %s",
				f.Start.Sub(gone).Round(time.Millisecond), gone.Sub(kill).Round(time.Millisecond), f, logText(logs, f.Result.reqID))
		case f.End.After(kill.Add(maxFailAfterKill)):
			t.Errorf("failed %s after the kill, want within %s: %v\n  HAProxy: %s", f.End.Sub(kill).Round(time.Millisecond), maxFailAfterKill, f, logText(logs, f.Result.reqID))
		case logged && lg.server != r.name:
			t.Errorf("failed on %s, not on the killed %s: %v\n  HAProxy: %s", lg.server, r.name, f, lg.text)
		case !logged && !noAnswer(f.Result.err):
			t.Errorf("failed with an answer, but HAProxy logged no request line: %v", f)
		case !logged:
			// In flight on the dead replica, on a client connection that had
			// carried a request before, and not retried by HAProxy (a write,
			// see haproxy.cfg): HAProxy closes the connection (HTTP/1.1) or
			// refuses the stream (HTTP/2) and logs nothing, so the client knows
			// the request got no answer.
			unlogged++
		}
		if f.Op == "create" {
			failedCreates = append(failedCreates, f.Result.email)
		}
	}
	// A request the client's transport sent again (it does so by itself
	// for a GET on a reused HTTP/1.1 connection that closed without an
	// answer) is one that failed once: it too must have been in flight.
	for _, rp := range replayed(calls) {
		if !rp.Start.Before(gone) || rp.Start.Before(kill.Add(-maxFailAfterKill)) {
			t.Errorf("replayed by the client's transport, not in flight at the kill: %v", rp)
		}
	}
	// Once the process was gone, nothing was sent to the dead replica: the
	// requests HAProxy logged on it all started before.
	var afterKill, retried, redispatched int
	for _, cl := range calls {
		lg, ok := logs[cl.Result.reqID]
		if !ok {
			continue
		}
		if lg.server == r.name && cl.Start.After(gone) && lg.at.Before(restart) {
			afterKill++
			t.Errorf("sent to %s after it was killed: %v\n  HAProxy: %s", r.name, cl, lg.text)
		}
		if cl.Start.After(kill.Add(-time.Second)) && cl.Start.Before(kill.Add(maxDownAfterKill)) && lg.retries != "0" {
			retried++
			if os.Getenv("CLUSTER_DEBUG") != "" {
				t.Logf("retried: %v start-kill=%s\n   %s", cl, cl.Start.Sub(kill), lg.text)
			}
			if strings.HasPrefix(lg.retries, "+") {
				redispatched++
			}
		}
	}
	// It rejoined: requests went to the new process.
	var rejoined int
	for _, lg := range logs {
		if lg.server == r.name && lg.at.After(up) && lg.status < 300 {
			rejoined++
		}
	}
	if rejoined == 0 {
		t.Errorf("%s got no requests after it was UP again", r.name)
	}
	var committed int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM users WHERE email = ANY($1)", failedCreates).Scan(&committed); err != nil {
		t.Fatal(err)
	}
	t.Logf("kill -9: %s; %d failed (%s; %d of them closed by HAProxy without a log line), all in flight on %s at the kill; "+
		"%d of the %d failed creates committed nonetheless (their users count below); "+
		"around the kill HAProxy retried %d requests (%d on another replica); %d requests to %s after it rejoined; %s",
		loadtest.Summary(calls), len(fails), loadtest.Counts(byOp), unlogged, r.name, committed, len(failedCreates), retried, redispatched, rejoined, r.name, serverSummary(logs, calls))
	return calls
}

// quietKill kills p with SIGKILL at a moment it holds no welcome job. A
// job killed mid-flight stays "running" until River rescues it after
// RescueStuckJobsAfter (5 minutes in usersd), far beyond this suite, and is
// then worked again: delivery is at least once (README, Welcome mail). That
// case is River's, not the load balancer's, and under this load every
// replica always holds jobs, so the kill avoids it the way an operator
// would: it pauses the queue (River's QueuePause; replicas in poll-only mode
// see it within River's QueuePollInterval, 2 s), waits until p's jobs are
// finished and recorded, kills p, and resumes the queue at once. The HTTP
// load is not paused. It returns the instant of the kill and how long the
// queue was paused before it.
func quietKill(t *testing.T, c *cluster, conn *pgx.Conn, p *proctest.Process) (time.Time, time.Duration) {
	clientID := riverClientID(t, p)
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, c.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rc, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	if err := rc.QueuePause(ctx, river.QueueDefault, nil); err != nil {
		t.Fatalf("pause the queue: %v", err)
	}
	defer func() {
		if err := rc.QueueResume(context.WithoutCancel(ctx), river.QueueDefault, nil); err != nil {
			t.Errorf("resume the queue: %v", err)
		}
	}()
	// p has seen the pause once two of its polls have passed, it has
	// fetched nothing for a second (while jobs wait: the load goes on) and
	// it holds no job.
	deadline := time.Now().Add(20 * time.Second)
	for {
		held, fetching := jobsOf(t, conn, clientID)
		if held == 0 && !fetching && time.Since(paused) > 2*queuePollInterval+500*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still holds %d running welcome jobs (fetching: %v) %s after the queue was paused", p.Name, held, fetching, time.Since(paused).Round(time.Millisecond))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	kill := time.Now()
	// Whatever p fetched between the last look and the kill would be held
	// for RescueStuckJobsAfter: none may be.
	if n, _ := jobsOf(t, conn, clientID); n > 0 {
		t.Errorf("%s was killed holding %d running welcome jobs", p.Name, n)
	}
	return kill, kill.Sub(paused)
}

// riverClientID is the id of p's River client: river_job.attempted_by
// names the clients that fetched a job, the last one current.
func riverClientID(t testing.TB, p *proctest.Process) string {
	t.Helper()
	recs := p.LogRecords("River client started")
	if len(recs) != 1 {
		t.Fatalf("%s logged %d \"River client started\" lines, want 1", p.Name, len(recs))
	}
	clientID, _ := recs[0]["client_id"].(string)
	if clientID == "" {
		t.Fatalf("%s: no River client_id in %v", p.Name, recs[0])
	}
	return clientID
}

// jobsOf counts the running jobs River client clientID fetched last, and
// reports whether it fetched any in the last second.
func jobsOf(t *testing.T, conn *pgx.Conn, clientID string) (held int, fetching bool) {
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE state = 'running'),
		coalesce(max(attempted_at) > now() - interval '1 second', false)
		FROM river_job WHERE attempted_by[cardinality(attempted_by)] = $1`, clientID).Scan(&held, &fetching); err != nil {
		t.Fatal(err)
	}
	return held, fetching
}

// testWelcomeMail: once River has worked every job, each user has exactly
// one welcome job, completed, and exactly one mail reached the SMTP sink,
// whichever replicas created the user and worked the job; every create a
// client was told succeeded is committed. The load deletes users too: a
// deleted user is gone, and has at most the one job and the one mail that
// may have come before its deletion.
func testWelcomeMail(t *testing.T, c *cluster, calls []call) {
	conn := dbtest.Connect(t, c.db.URL)
	ctx := t.Context()
	start := time.Now()
	var pending int
	for {
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'welcome_email'
			AND state NOT IN ('completed', 'cancelled', 'discarded')`).Scan(&pending); err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			break
		}
		if time.Since(start) > 90*time.Second {
			t.Fatalf("%d welcome jobs still not finalized after %s", pending, time.Since(start).Round(time.Second))
		}
		time.Sleep(100 * time.Millisecond)
	}
	waited := time.Since(start)

	// A delete that failed may have committed (kill -9): its user may or
	// may not be there.
	deleteSent := map[string]bool{}
	var deleted []string // acknowledged deletes
	for _, cl := range calls {
		if cl.Op == "delete" {
			deleteSent[cl.Result.userID] = true
			if cl.Result.err == nil {
				deleted = append(deleted, cl.Result.userID)
			}
		}
	}
	var acked, gone []string // acknowledged creates, and the emails of those deleted since
	var ackedCreates int
	for _, cl := range calls {
		if cl.Op == "create" && cl.Result.err == nil {
			ackedCreates++
			if deleteSent[cl.Result.userID] {
				gone = append(gone, strings.ToLower(cl.Result.email))
			} else {
				acked = append(acked, cl.Result.userID)
			}
		}
	}
	var ackedFound, deletedFound int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM users WHERE id::text = ANY($1)", acked).Scan(&ackedFound); err != nil {
		t.Fatal(err)
	}
	if ackedFound != len(acked) {
		t.Errorf("%d creates acknowledged to clients (and not deleted), but only %d of those users are committed", len(acked), ackedFound)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM users WHERE id::text = ANY($1)", deleted).Scan(&deletedFound); err != nil {
		t.Fatal(err)
	}
	if deletedFound > 0 {
		t.Errorf("%d of %d users whose deletion was acknowledged are still there", deletedFound, len(deleted))
	}
	deleteSentIDs := slices.Collect(maps.Keys(deleteSent))

	var users, jobs, notOne, orphans, deletedTwice, notCompleted, notWelcomed int
	for _, q := range []struct {
		sql  string
		into *int
		args []any
	}{
		{"SELECT count(*) FROM users", &users, nil},
		{"SELECT count(*) FROM river_job WHERE kind = 'welcome_email'", &jobs, nil},
		{`SELECT count(*) FROM (SELECT u.id FROM users u LEFT JOIN river_job j
			ON j.kind = 'welcome_email' AND j.args->>'user_id' = u.id::text
			GROUP BY u.id HAVING count(j.id) <> 1) x`, &notOne, nil},
		{`SELECT count(*) FROM river_job j WHERE kind = 'welcome_email'
			AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id::text = j.args->>'user_id')
			AND NOT j.args->>'user_id' = ANY($1)`, &orphans, []any{deleteSentIDs}},
		{`SELECT count(*) FROM (SELECT args->>'user_id' FROM river_job WHERE kind = 'welcome_email'
			AND args->>'user_id' = ANY($1) GROUP BY 1 HAVING count(*) > 1) x`, &deletedTwice, []any{deleteSentIDs}},
		{"SELECT count(*) FROM river_job WHERE kind = 'welcome_email' AND state <> 'completed'", &notCompleted, nil},
		{"SELECT count(*) FROM users WHERE welcomed_at IS NULL", &notWelcomed, nil},
	} {
		if err := conn.QueryRow(ctx, q.sql, q.args...).Scan(q.into); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	if notOne > 0 || orphans > 0 || deletedTwice > 0 || notCompleted > 0 || notWelcomed > 0 {
		t.Errorf("%d users, %d welcome jobs: %d users without exactly one job, %d jobs without a user (other than the deleted ones), %d deleted users with more than one job, %d jobs not completed, %d users not marked welcomed",
			users, jobs, notOne, orphans, deletedTwice, notCompleted, notWelcomed)
	}

	// The sink: one mail per user, to that user, none to anyone else.
	rows, err := conn.Query(ctx, "SELECT lower(email) FROM users")
	if err != nil {
		t.Fatal(err)
	}
	emails, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	msgs := c.smtp.Messages()
	for _, m := range msgs {
		for _, to := range m.To {
			got[strings.ToLower(strings.Trim(to, "<>"))]++
		}
	}
	var missing, dup int
	for _, e := range emails {
		switch n := got[e]; {
		case n == 0:
			missing++
			if missing <= 5 {
				t.Errorf("no welcome mail for %s", e)
			}
		case n > 1:
			dup++
			if dup <= 5 {
				t.Errorf("%d welcome mails for %s", n, e)
			}
		}
		delete(got, e)
	}
	// Mailed before its deletion, or not at all.
	var goneMailed int
	for _, e := range gone {
		if n := got[e]; n > 1 {
			t.Errorf("%d welcome mails for %s, a user deleted since", n, e)
		}
		goneMailed += got[e]
		delete(got, e)
	}
	if len(got) > 0 {
		t.Errorf("%d mails to addresses that are no user's", len(got))
	}
	if missing > 0 || dup > 0 || len(msgs) != users+goneMailed {
		t.Errorf("%d users, %d mails (%d of them to users deleted since): %d users got none, %d got more than one", users, len(msgs), goneMailed, missing, dup)
	}
	t.Logf("%d users (%d acknowledged creates, %d deletes sent, %d acknowledged), %d welcome jobs, all completed %s after the load ended; %d mails, one per user, and %d to users deleted since (SMTP DATA commands: %d)",
		users, ackedCreates, len(deleteSent), len(deleted), jobs, waited.Round(time.Millisecond), len(msgs)-goneMailed, goneMailed, c.smtp.Attempts())
}

// waitLogged waits (up to 5 s) until HAProxy has logged every call that
// succeeded, and returns its request lines by X-Request-Id. (A failed call
// may have no line: see testKill9.)
func (h *haproxy) waitLogged(t *testing.T, calls []call) map[string]reqLog {
	t.Helper()
	if n := h.droppedLogs(t); n > 0 {
		t.Errorf("HAProxy dropped %d log lines (DroppedLogs): calls cannot all be traced", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		logs := h.requests()
		var missing []call
		for _, cl := range calls {
			if _, ok := logs[cl.Result.reqID]; !ok && cl.Result.err == nil {
				missing = append(missing, cl)
			}
		}
		if len(missing) == 0 {
			return logs
		}
		if time.Now().After(deadline) {
			t.Errorf("%d of %d successful calls not in HAProxy's log, e.g. %v", len(missing), len(calls), missing[0])
			return logs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func logText(logs map[string]reqLog, id string) string {
	if lg, ok := logs[id]; ok {
		return lg.text
	}
	return "(not logged)"
}

// serverSummary counts the calls by the replica HAProxy sent them to.
func serverSummary(logs map[string]reqLog, calls []call) string {
	by := map[string]int{}
	for _, cl := range calls {
		if lg, ok := logs[cl.Result.reqID]; ok {
			by[lg.server]++
		} else {
			by["(not logged)"]++
		}
	}
	return "by replica " + loadtest.Counts(by)
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// poolSampler samples PgBouncer's SHOW POOLS and PostgreSQL's connections to
// the test database every 250 ms, for the connection numbers of each phase.
type poolSampler struct {
	mu                     sync.Mutex
	maxClients, maxServers int
	maxWaiting             int
	maxWait                time.Duration
	maxBackends            int
	samples                int
	stop                   chan struct{}
	wg                     sync.WaitGroup
	firstErr               error
}

func startPoolSampler(t *testing.T, c *cluster) *poolSampler {
	s := &poolSampler{stop: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	admin, err := pgx.Connect(ctx, c.adminURL)
	if err != nil {
		cancel()
		t.Fatalf("PgBouncer console: %v", err)
	}
	direct, err := pgx.Connect(ctx, c.db.URL)
	if err != nil {
		cancel()
		t.Fatalf("connect: %v", err)
	}
	s.wg.Go(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			s.sample(ctx, admin, direct, c.db.Name)
		}
	})
	t.Cleanup(func() {
		close(s.stop)
		s.wg.Wait()
		_ = admin.Close(ctx)
		_ = direct.Close(ctx)
		cancel()
	})
	return s
}

func (s *poolSampler) sample(ctx context.Context, admin, direct *pgx.Conn, db string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rows, err := admin.Query(ctx, "SHOW POOLS")
	if err != nil {
		s.fail(err)
		return
	}
	var clients, servers, waiting int
	var wait time.Duration
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			s.fail(err)
			break
		}
		row := map[string]int{}
		var name string
		for i, fd := range rows.FieldDescriptions() {
			v := fmt.Sprint(vals[i])
			if fd.Name == "database" {
				name = v
			}
			row[fd.Name], _ = strconv.Atoi(v)
		}
		if name != "usersd" {
			continue
		}
		clients += row["cl_active"] + row["cl_waiting"]
		servers += row["sv_active"] + row["sv_idle"] + row["sv_used"] + row["sv_tested"] + row["sv_login"]
		waiting += row["cl_waiting"]
		wait = max(wait, time.Duration(row["maxwait"])*time.Second+time.Duration(row["maxwait_us"])*time.Microsecond)
	}
	rows.Close()
	var backends int
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", db).Scan(&backends); err != nil {
		s.fail(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples++
	s.maxClients = max(s.maxClients, clients)
	s.maxServers = max(s.maxServers, servers)
	s.maxWaiting = max(s.maxWaiting, waiting)
	s.maxWait = max(s.maxWait, wait)
	s.maxBackends = max(s.maxBackends, backends-1) // not the sampler's own
}

func (s *poolSampler) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.firstErr == nil {
		s.firstErr = err
	}
}

// report describes the maxima since the last reset.
func (s *poolSampler) report() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := fmt.Sprintf("connections (max of %d samples): PgBouncer clients %d, PgBouncer server connections %d, clients waiting %d (longest wait %s), PostgreSQL backends on the database %d",
		s.samples, s.maxClients, s.maxServers, s.maxWaiting, s.maxWait, s.maxBackends)
	if s.firstErr != nil {
		r += fmt.Sprintf(" (sampling error: %v)", s.firstErr)
	}
	return r
}

func (s *poolSampler) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxClients, s.maxServers, s.maxWaiting, s.maxWait, s.maxBackends, s.samples = 0, 0, 0, 0, 0, 0
}
