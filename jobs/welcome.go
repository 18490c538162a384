// Package jobs holds usersd's River workers: the welcome email.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/acme/usersd/store"
	"github.com/acme/usersd/users"
)

// WelcomeArgs is the welcome_email job: mail user UserID once.
type WelcomeArgs struct {
	UserID uuid.UUID `json:"user_id"`
}

// Kind is the job kind stored in river_job.
func (WelcomeArgs) Kind() string { return "welcome_email" }

// WelcomeHooks are the store hooks of the welcome mail. Creating users
// inserts their welcome jobs in the same transaction (one statement for a
// whole batch), so a committed user
// always has its job and a rolled-back one never does. Deleting a user
// deletes its welcome jobs that have not started, in the same transaction,
// so an erased user is never mailed.
func WelcomeHooks(client *river.Client[pgx.Tx]) store.Hooks {
	return store.Hooks{
		OnCreate: func(ctx context.Context, tx pgx.Tx, created []users.User) error {
			jobs := make([]river.InsertManyParams, len(created))
			for i, u := range created {
				jobs[i] = river.InsertManyParams{Args: WelcomeArgs{UserID: u.ID}}
			}
			if _, err := client.InsertManyTx(ctx, tx, jobs); err != nil {
				return fmt.Errorf("enqueue welcome email: %w", err)
			}
			return nil
		},
		OnDelete: func(ctx context.Context, tx pgx.Tx, id uuid.UUID) error {
			// args @> is what River's GIN index on args serves. A running
			// job is left alone: it finds no user and completes unsent.
			pending, err := client.JobListTx(ctx, tx, river.NewJobListParams().
				Kinds(WelcomeArgs{}.Kind()).
				States(rivertype.JobStateAvailable, rivertype.JobStateScheduled, rivertype.JobStateRetryable, rivertype.JobStatePending).
				Where("args @> jsonb_build_object('user_id', @user_id::text)", river.NamedArgs{"user_id": id.String()}).
				First(100))
			if err != nil || len(pending.Jobs) == 0 {
				return err
			}
			ids := make([]int64, len(pending.Jobs))
			for i, j := range pending.Jobs {
				ids[i] = j.ID
			}
			_, err = client.JobDeleteManyTx(ctx, tx, river.NewJobDeleteManyParams().IDs(ids...))
			return err
		},
	}
}

// WelcomeWorker sends the welcome mail and records the send in the
// transaction that completes the job. A job whose send is already recorded
// completes without mailing again.
type WelcomeWorker struct {
	river.WorkerDefaults[WelcomeArgs]
	DB     *store.DB
	Users  *store.Users
	Mailer Mailer
	Log    *slog.Logger
}

// Timeout bounds one attempt, SMTP conversation included.
func (w *WelcomeWorker) Timeout(*river.Job[WelcomeArgs]) time.Duration { return time.Minute }

// Work mails the user. Temporary failures return an error, so River retries
// with backoff; a permanent rejection cancels the job.
func (w *WelcomeWorker) Work(ctx context.Context, job *river.Job[WelcomeArgs]) error {
	u, welcomed, err := w.Users.GetForWelcome(ctx, job.Args.UserID)
	if errors.Is(err, users.ErrNotFound) {
		// Deleted (erased) since the job was queued: nobody to mail.
		w.Log.InfoContext(ctx, "welcome mail not sent: the user was deleted", "user_id", job.Args.UserID, "job_id", job.ID)
		return nil
	}
	if err != nil {
		return err
	}
	if !welcomed {
		if err := w.Mailer.Send(ctx, WelcomeMail(u)); err != nil {
			if errors.Is(err, ErrPermanent) {
				w.Log.WarnContext(ctx, "welcome mail rejected; not retrying", "user_id", u.ID, "job_id", job.ID, "err", err)
				return river.JobCancel(err)
			}
			return err
		}
	}
	return w.DB.InTx(ctx, func(tx pgx.Tx) error {
		if !welcomed {
			if err := w.Users.MarkWelcomedTx(ctx, tx, u.ID); err != nil {
				return err
			}
		}
		_, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		return err
	})
}

// WelcomeMail is the mail a new user receives.
func WelcomeMail(u users.User) Mail {
	return Mail{
		Kind:    "welcome",
		UserID:  u.ID,
		To:      u.Email,
		Subject: "Welcome, " + u.FullName,
		Body: "Hello " + u.FullName + ",\n\n" +
			"welcome aboard! Your account " + u.Email + " is ready.\n\n" +
			"-- usersd\n",
	}
}
