package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/acme/usersd/store"
)

// RetentionArgs is the event_retention job: delete the change feed's
// events older than the retention. It runs as a River periodic job, on
// the leader only, at start-up and every RetentionEvery.
type RetentionArgs struct{}

// Kind is the job kind stored in river_job.
func (RetentionArgs) Kind() string { return "event_retention" }

// RetentionEvery is how often retention runs.
const RetentionEvery = time.Minute

// RetentionWorker deletes expired events.
type RetentionWorker struct {
	river.WorkerDefaults[RetentionArgs]
	Users     *store.Users
	Retention time.Duration // EVENT_RETENTION
	Log       *slog.Logger
}

// Work deletes the events that occurred more than Retention ago.
func (w *RetentionWorker) Work(ctx context.Context, _ *river.Job[RetentionArgs]) error {
	n, err := w.Users.ExpireEvents(ctx, time.Now().Add(-w.Retention))
	if err != nil {
		return err
	}
	if n > 0 {
		w.Log.InfoContext(ctx, "expired change feed events", "deleted", n, "retention", w.Retention)
	}
	return nil
}

// RetentionJob is the periodic job that runs RetentionWorker.
func RetentionJob() *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(RetentionEvery),
		func() (river.JobArgs, *river.InsertOpts) { return RetentionArgs{}, nil },
		&river.PeriodicJobOpts{RunOnStart: true})
}
