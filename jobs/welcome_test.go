//go:build !nodb

package jobs_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"go.uber.org/goleak"

	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/internal/logtest"
	"github.com/acme/usersd/internal/smtptest"
	"github.com/acme/usersd/jobs"
	"github.com/acme/usersd/store"
	"github.com/acme/usersd/users"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fastRetry retries after 100 ms instead of River's polynomial backoff.
type fastRetry struct{}

func (fastRetry) NextRetry(*rivertype.JobRow) time.Time {
	return time.Now().Add(100 * time.Millisecond)
}

type env struct {
	db     *store.DB
	users  *store.Users
	client *river.Client[pgx.Tx]
	smtp   *smtptest.Server
	events <-chan *river.Event
}

// setup wires the store and a River client working welcome jobs into a
// real SMTP server, as usersd does. start=false leaves the client
// insert-only.
func setup(t *testing.T, start bool) *env {
	t.Helper()
	e := &env{db: dbtest.New(t, store.Config{MaxConns: 10}), smtp: smtptest.New(t)}
	log := logtest.New(t)
	mailer, err := jobs.NewMailer("smtp://"+e.smtp.Addr, "usersd <no-reply@example.com>", log)
	if err != nil {
		t.Fatal(err)
	}
	welcome := &jobs.WelcomeWorker{DB: e.db, Mailer: mailer, Log: log}
	workers := river.NewWorkers()
	river.AddWorker(workers, welcome)
	cfg := &river.Config{
		Logger:            log,
		Workers:           workers,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 2}},
		RetryPolicy:       fastRetry{},
		FetchCooldown:     20 * time.Millisecond,
		FetchPollInterval: 50 * time.Millisecond,
		TestOnly:          true,
	}
	e.client, err = river.NewClient(riverpgxv5.New(e.db.Pool), cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.users = store.NewUsers(e.db, jobs.WelcomeHooks(e.client))
	welcome.Users = e.users
	if start {
		events, cancel := e.client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled)
		e.events = events
		if err := e.client.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, done := context.WithTimeout(context.Background(), 10*time.Second)
			defer done()
			_ = e.client.Stop(ctx)
			cancel()
		})
	}
	return e
}

// waitFor returns the next event of kind for a job, failing after 15 s.
func (e *env) waitFor(t *testing.T, kind river.EventKind) *river.Event {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case ev := <-e.events:
			if ev.Kind == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event within 15s", kind)
		}
	}
}

func (e *env) jobCount(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM river_job WHERE kind = 'welcome_email'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestJobInsertedInUserTransaction(t *testing.T) {
	t.Parallel()
	e := setup(t, false)
	ctx := t.Context()
	// Check from inside the user's transaction that its job is there.
	var checked bool
	st := store.NewUsers(e.db, store.Hooks{OnCreate: func(ctx context.Context, tx pgx.Tx, created []users.User) error {
		if err := jobs.WelcomeHooks(e.client).OnCreate(ctx, tx, created); err != nil {
			return err
		}
		for _, u := range created {
			rivertest.RequireInsertedTx[*riverpgxv5.Driver](ctx, t, tx, &jobs.WelcomeArgs{UserID: u.ID}, nil)
		}
		checked = true
		return nil
	}})
	if _, err := st.Create(ctx, users.NewUser{Email: "tx@example.com", FullName: "Tx User"}); err != nil {
		t.Fatal(err)
	}
	if !checked {
		t.Fatal("hook did not run")
	}
	if n := e.jobCount(t); n != 1 {
		t.Fatalf("jobs = %d, want 1", n)
	}
	// A duplicate email rolls back, job included.
	if _, err := e.users.Create(ctx, users.NewUser{Email: "TX@example.com", FullName: "Again"}); !errors.Is(err, users.ErrEmailTaken) {
		t.Fatalf("duplicate: %v", err)
	}
	// A cancelled request inserts nothing either.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.users.Create(cctx, users.NewUser{Email: "cancelled@example.com", FullName: "Cancelled"}); err == nil {
		t.Fatal("create with a cancelled context succeeded")
	}
	if n := e.jobCount(t); n != 1 {
		t.Errorf("jobs = %d after failed creates, want 1", n)
	}
	assertOneJobPerUser(t, e.db)
}

// assertOneJobPerUser: every user has exactly one welcome job and no job
// lacks its user.
func assertOneJobPerUser(t *testing.T, db *store.DB) {
	t.Helper()
	var orphans, wrong int
	err := db.Pool.QueryRow(t.Context(), `
		SELECT
		  (SELECT count(*) FROM river_job j WHERE j.kind = 'welcome_email'
		     AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = (j.args->>'user_id')::uuid)),
		  (SELECT count(*) FROM users u WHERE (SELECT count(*) FROM river_job j
		     WHERE j.kind = 'welcome_email' AND (j.args->>'user_id')::uuid = u.id) <> 1)`).Scan(&orphans, &wrong)
	if err != nil {
		t.Fatal(err)
	}
	if orphans != 0 || wrong != 0 {
		t.Errorf("%d jobs without a user, %d users without exactly one job", orphans, wrong)
	}
}

func TestWelcomeMailDelivered(t *testing.T) {
	t.Parallel()
	e := setup(t, true)
	u, err := e.users.Create(t.Context(), users.NewUser{Email: "grace@example.com", FullName: "Grace Hopper"})
	if err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, river.EventKindJobCompleted)
	msgs := e.smtp.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d mails, want 1", len(msgs))
	}
	m := msgs[0]
	if len(m.To) != 1 || m.To[0] != u.Email || m.From != "no-reply@example.com" {
		t.Errorf("envelope from %q to %v", m.From, m.To)
	}
	if !strings.Contains(m.Data, "Hello Grace Hopper,") || !strings.Contains(m.Data, "To: <grace@example.com>") {
		t.Errorf("mail does not greet the user:\n%s", m.Data)
	}
	if _, welcomed, err := e.users.GetForWelcome(t.Context(), u.ID); err != nil || !welcomed {
		t.Errorf("welcomed = %v (err %v), want the send recorded", welcomed, err)
	}
}

func TestTemporaryFailuresRetried(t *testing.T) {
	t.Parallel()
	e := setup(t, true)
	e.smtp.Reply(451, 451)
	if _, err := e.users.Create(t.Context(), users.NewUser{Email: "retry@example.com", FullName: "Retry Me"}); err != nil {
		t.Fatal(err)
	}
	ev := e.waitFor(t, river.EventKindJobCompleted)
	if ev.Job.Attempt != 3 {
		t.Errorf("completed on attempt %d, want 3", ev.Job.Attempt)
	}
	if got := len(e.smtp.Messages()); got != 1 {
		t.Errorf("%d mails delivered, want exactly 1", got)
	}
	if got := e.smtp.Attempts(); got != 3 {
		t.Errorf("%d delivery attempts, want 3", got)
	}
}

func TestPermanentRejectionCancels(t *testing.T) {
	t.Parallel()
	e := setup(t, true)
	e.smtp.Reply(550)
	if _, err := e.users.Create(t.Context(), users.NewUser{Email: "nobody@example.com", FullName: "Nobody"}); err != nil {
		t.Fatal(err)
	}
	ev := e.waitFor(t, river.EventKindJobCancelled)
	if ev.Job.Attempt != 1 {
		t.Errorf("cancelled on attempt %d, want 1", ev.Job.Attempt)
	}
	if len(e.smtp.Messages()) != 0 {
		t.Error("mail delivered despite rejection")
	}
}

func TestRecordedSendNotRepeated(t *testing.T) {
	t.Parallel()
	e := setup(t, false)
	ctx := t.Context()
	u, err := e.users.Create(ctx, users.NewUser{Email: "once@example.com", FullName: "Once"})
	if err != nil {
		t.Fatal(err)
	}
	// The send was recorded, but the job is still available, as when a
	// worker died between recording and completing... which JobCompleteTx
	// makes impossible, or when a job is retried by hand.
	if _, err := e.db.Pool.Exec(ctx, `UPDATE users SET welcomed_at = now() WHERE id = $1`, u.ID); err != nil {
		t.Fatal(err)
	}
	events, cancel := e.client.Subscribe(river.EventKindJobCompleted)
	defer cancel()
	if err := e.client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, done := context.WithTimeout(context.Background(), 10*time.Second)
		defer done()
		_ = e.client.Stop(sctx)
	}()
	select {
	case <-events:
	case <-time.After(15 * time.Second):
		t.Fatal("job did not complete")
	}
	if n := e.smtp.Attempts(); n != 0 {
		t.Errorf("%d mails sent for a user whose welcome was recorded, want 0", n)
	}
}

// TestDeleteBeforeWelcomeSendsNoMail: deleting a user deletes its welcome
// job in the same transaction, so when the workers start only the kept
// user is mailed.
func TestDeleteBeforeWelcomeSendsNoMail(t *testing.T) {
	t.Parallel()
	e := setup(t, false)
	ctx := t.Context()
	doomed, err := e.users.Create(ctx, users.NewUser{Email: "doomed@example.com", FullName: "Doomed"})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := e.users.Create(ctx, users.NewUser{Email: "kept@example.com", FullName: "Kept"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.users.Delete(ctx, doomed.ID, users.Guard{}); err != nil {
		t.Fatal(err)
	}
	jobsOf := func(id uuid.UUID) int {
		var n int
		if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'welcome_email' AND args->>'user_id' = $1`, id.String()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := jobsOf(doomed.ID); n != 0 {
		t.Errorf("%d welcome jobs left for the deleted user, want 0", n)
	}
	if n := jobsOf(kept.ID); n != 1 {
		t.Errorf("%d welcome jobs for the kept user, want 1", n)
	}

	events, cancel := e.client.Subscribe(river.EventKindJobCompleted)
	defer cancel()
	if err := e.client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, done := context.WithTimeout(context.Background(), 10*time.Second)
		defer done()
		_ = e.client.Stop(sctx)
	}()
	select {
	case <-events:
	case <-time.After(15 * time.Second):
		t.Fatal("the kept user's job did not complete")
	}
	time.Sleep(300 * time.Millisecond) // several fetch intervals: time for a stray job to run
	msgs := e.smtp.Messages()
	if len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != kept.Email {
		t.Errorf("mails: %+v; want exactly one, to %s", msgs, kept.Email)
	}
}

// TestRunningJobFindsNoUser: a welcome job whose user was deleted after it
// started (here: never existed) completes without mailing.
func TestRunningJobFindsNoUser(t *testing.T) {
	t.Parallel()
	e := setup(t, true)
	if _, err := e.client.Insert(t.Context(), jobs.WelcomeArgs{UserID: uuid.Must(uuid.NewV7())}, nil); err != nil {
		t.Fatal(err)
	}
	ev := e.waitFor(t, river.EventKindJobCompleted)
	if ev.Job.State != rivertype.JobStateCompleted || ev.Job.Attempt != 1 {
		t.Errorf("job %s after attempt %d, want completed on the first", ev.Job.State, ev.Job.Attempt)
	}
	if n := e.smtp.Attempts(); n != 0 {
		t.Errorf("%d mails for a user that does not exist, want 0", n)
	}
}
