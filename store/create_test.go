//go:build !nodb

package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/jobs"
	"github.com/acme/usersd/store"
	"github.com/acme/usersd/users"
)

// withJobs is the user store as usersd wires it: group commit on, welcome
// jobs inserted by an insert-only River client in each batch's transaction.
func withJobs(t *testing.T, db *store.DB, opts ...store.UsersOption) *store.Users {
	t.Helper()
	rc, err := river.NewClient(riverpgxv5.New(db.Pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return store.NewUsers(db, jobs.WelcomeHooks(rc), opts...)
}

// checkUsersHaveOneJob fails unless every user has exactly one welcome job
// and every welcome job a user.
func checkUsersHaveOneJob(t *testing.T, db *store.DB) int {
	t.Helper()
	var nUsers, orphans, wrong int
	err := db.Pool.QueryRow(t.Context(), `
		SELECT (SELECT count(*) FROM users),
		       (SELECT count(*) FROM river_job j WHERE j.kind = 'welcome_email'
		           AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = (j.args->>'user_id')::uuid)),
		       (SELECT count(*) FROM users u WHERE (SELECT count(*) FROM river_job j
		           WHERE j.kind = 'welcome_email' AND (j.args->>'user_id')::uuid = u.id) <> 1)`).Scan(&nUsers, &orphans, &wrong)
	if err != nil {
		t.Fatal(err)
	}
	if orphans != 0 || wrong != 0 {
		t.Errorf("%d welcome jobs without a user, %d users without exactly one job", orphans, wrong)
	}
	return nUsers
}

// TestGroupCommitAnswers fires 300 creates at once: duplicate emails in
// other cases, duplicate subjects, rows PostgreSQL refuses, callers that
// give up, and plain ones. Each caller must get the answer it would get
// alone, and the tables must agree with the answers.
func TestGroupCommitAnswers(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t, store.Config{MaxConns: 10, AcquireTimeout: 10 * time.Second})
	st := withJobs(t, db)

	type kind int
	const (
		plain kind = iota
		dupEmail
		dupSubject
		badRow
		givesUp
	)
	type req struct {
		kind kind
		in   users.NewUser
		ctx  context.Context
		user users.User
		err  error
	}
	var reqs []*req
	add := func(k kind, in users.NewUser) { reqs = append(reqs, &req{kind: k, in: in, ctx: context.Background()}) }
	for g := range 50 { // three casings of one email
		for _, e := range []string{"dup%d@example.com", "DUP%d@Example.com", "Dup%d@EXAMPLE.COM"} {
			add(dupEmail, users.NewUser{Email: fmt.Sprintf(e, g), FullName: "Dup"})
		}
	}
	for g := range 30 { // two self sign-ups of one subject
		for i := range 2 {
			add(dupSubject, users.NewUser{Email: fmt.Sprintf("sub%d-%d@example.com", g, i), FullName: "Sub", Subject: fmt.Sprintf("subject-%d", g)})
		}
	}
	for i := range 20 { // PostgreSQL refuses NUL in text: must not fail the rest of its batch
		add(badRow, users.NewUser{Email: fmt.Sprintf("bad%d@example.com", i), FullName: "Bad\x00Row"})
	}
	for i := range 40 {
		add(givesUp, users.NewUser{Email: fmt.Sprintf("leaver%d@example.com", i), FullName: "Leaver"})
	}
	for i := range 30 {
		add(plain, users.NewUser{Email: fmt.Sprintf("plain%d@example.com", i), FullName: "Plain"})
	}
	rand.Shuffle(len(reqs), func(i, j int) { reqs[i], reqs[j] = reqs[j], reqs[i] })

	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, r := range reqs {
		wg.Go(func() {
			<-start
			ctx := r.ctx
			if r.kind == givesUp {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Duration(i%40)*time.Millisecond/2)
				defer cancel()
			}
			r.user, r.err = st.Create(ctx, r.in)
		})
	}
	close(start)
	wg.Wait()

	ok := map[kind]int{}
	emailWinners, subjectWinners := map[string]int{}, map[string]int{}
	for _, r := range reqs {
		if r.err == nil {
			ok[r.kind]++
			if r.user.Email != r.in.Email || r.user.ID.Version() != 7 || r.user.CreatedAt.IsZero() {
				t.Errorf("created %+v for %+v", r.user, r.in)
			}
		}
		switch r.kind {
		case plain:
			if r.err != nil {
				t.Errorf("plain create %s: %v", r.in.Email, r.err)
			}
		case dupEmail:
			if r.err == nil {
				emailWinners[strings.ToLower(r.in.Email)]++
			} else if !errors.Is(r.err, users.ErrEmailTaken) {
				t.Errorf("duplicate email %s: %v, want ErrEmailTaken", r.in.Email, r.err)
			}
		case dupSubject:
			if r.err == nil {
				subjectWinners[r.in.Subject]++
			} else if !errors.Is(r.err, users.ErrSubjectTaken) {
				t.Errorf("duplicate subject %s: %v, want ErrSubjectTaken", r.in.Subject, r.err)
			}
		case badRow:
			if r.err == nil || errors.Is(r.err, users.ErrEmailTaken) || errors.Is(r.err, users.ErrUnavailable) {
				t.Errorf("a row PostgreSQL refuses: %v, want its own error", r.err)
			}
		case givesUp:
			if r.err != nil && !errors.Is(r.err, context.DeadlineExceeded) {
				t.Errorf("a caller that gave up: %v, want success or its deadline", r.err)
			}
		}
	}
	for e, n := range emailWinners {
		if n != 1 {
			t.Errorf("email %s created %d times", e, n)
		}
	}
	if len(emailWinners) != 50 || len(subjectWinners) != 30 {
		t.Errorf("%d emails and %d subjects won, want 50 and 30", len(emailWinners), len(subjectWinners))
	}
	for sub, n := range subjectWinners {
		if n != 1 {
			t.Errorf("subject %s signed up %d times", sub, n)
		}
	}

	// The tables: every success is stored; a caller that gave up has its
	// user stored with its job, or not at all.
	stored := checkUsersHaveOneJob(t, db)
	var leavers int
	if err := db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM users WHERE email LIKE 'leaver%'`).Scan(&leavers); err != nil {
		t.Fatal(err)
	}
	if want := 30 + 50 + 30 + leavers; stored != want {
		t.Errorf("%d users stored, want %d (plain, emails, subjects, and %d leavers whose batch had started)", stored, want, leavers)
	}
	if leavers < ok[givesUp] {
		t.Errorf("%d leavers told success but only %d stored", ok[givesUp], leavers)
	}
	t.Logf("leavers: %d stored, %d of them told success; %d gave up before their batch started", leavers, ok[givesUp], 40-leavers)
}

// TestGroupCommitOutage cuts PostgreSQL off in the middle of a stream of
// concurrent creates: every answer is a success or unavailable (or the
// caller's deadline), every success is stored, and every stored user has
// exactly one welcome job.
func TestGroupCommitOutage(t *testing.T) {
	t.Parallel()
	proxy := dbtest.NewProxy(t, dbtest.URL(t))
	db, err := store.Open(t.Context(), store.Config{URL: proxy.URL, MaxConns: 8, AcquireTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	st := withJobs(t, db)
	// A first create makes sure the schema answers through the proxy.
	if _, err := st.Create(t.Context(), users.NewUser{Email: "first@example.com", FullName: "First"}); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var created []users.User
	answers := map[string]int{}
	var wg sync.WaitGroup
	stop := time.Now().Add(1500 * time.Millisecond)
	for w := range 32 {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				u, err := st.Create(ctx, users.NewUser{Email: fmt.Sprintf("w%d-%d@example.com", w, i), FullName: "Outage"})
				cancel()
				mu.Lock()
				switch {
				case err == nil:
					created = append(created, u)
					answers["ok"]++
				case errors.Is(err, users.ErrUnavailable):
					answers["unavailable"]++
				case errors.Is(err, context.DeadlineExceeded):
					answers["deadline"]++
				default:
					answers["other"]++
					t.Errorf("during the outage: %v", err)
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(400 * time.Millisecond)
	proxy.Cut()
	time.Sleep(600 * time.Millisecond)
	proxy.Restore()
	wg.Wait()
	t.Logf("answers: %v", answers)
	if answers["ok"] == 0 || answers["unavailable"] == 0 {
		t.Errorf("answers %v: want successes before the cut and unavailable during it", answers)
	}

	// Check the tables.
	conn, err := pgx.Connect(t.Context(), proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, u := range created {
		var n int
		if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM users WHERE id = $1`, u.ID).Scan(&n); err != nil || n != 1 {
			t.Errorf("acknowledged user %s not stored (%v)", u.ID, err)
		}
	}
	checkUsersHaveOneJob(t, db)
}

// TestGroupCommitConflictFirst queues a batch whose first create conflicts:
// that conflict is its caller's answer, not the batch's failure, so the
// rows after it commit once and their callers are told so (retrying them
// one at a time would find each conflicting with itself).
func TestGroupCommitConflictFirst(t *testing.T) {
	t.Parallel()
	url := dbtest.URL(t)
	// One connection, so one batch slot: the creates queue behind the
	// first, which waits on a table lock.
	db, err := store.Open(context.Background(), store.Config{URL: url, MaxConns: 1, AcquireTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	st := withJobs(t, db)
	ctx := t.Context()
	if _, err := st.Create(ctx, users.NewUser{Email: "taken@example.com", FullName: "First"}); err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	lock := dbtest.LockUsers(t, conn)

	var wg sync.WaitGroup
	errs := make(map[string]error)
	var mu sync.Mutex
	create := func(email string) {
		wg.Go(func() {
			_, err := st.Create(ctx, users.NewUser{Email: email, FullName: "Queued"})
			mu.Lock()
			errs[email] = err
			mu.Unlock()
		})
	}
	create("holder@example.com") // takes the slot and waits for the lock
	waitForLockWaiters(t, conn, 1)
	create("TAKEN@example.com") // first in the queue
	time.Sleep(200 * time.Millisecond)
	create("second@example.com")
	create("third@example.com")
	time.Sleep(200 * time.Millisecond)
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	for email, err := range errs {
		switch {
		case email == "TAKEN@example.com":
			if !errors.Is(err, users.ErrEmailTaken) {
				t.Errorf("%s: %v, want ErrEmailTaken", email, err)
			}
		case err != nil:
			t.Errorf("%s: %v, want success", email, err)
		}
	}
	if n := checkUsersHaveOneJob(t, db); n != 4 {
		t.Errorf("%d users stored, want 4", n)
	}
}

// waitForLockWaiters waits until n other sessions wait for a lock.
func waitForLockWaiters(t *testing.T, conn *pgx.Conn, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int
		if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions wait for a lock after 30 s, want %d", waiting, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
