package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/acme/usersd/users"
)

// batchSize is the span attribute with the number of creates in a batch.
const batchSize = attribute.Key("users.batch_size")

// Group commit of creates: batches of at most maxBatch creates, at most
// maxBatchSlots transactions of them in flight at once (never more than the
// pool has connections). Under load the creates in flight share the slots,
// so batches grow with concurrency; a lone create runs at once on a free
// slot. More than one slot, so that one slow transaction (a lock, a slow
// disk) cannot hold every create behind it.
const (
	maxBatch      = 64
	maxBatchSlots = 8
)

// Create inserts a user with a new UUIDv7 id, and runs the create hook in the
// same transaction. It expects validated input. An email that another user
// has, ignoring case, is users.ErrEmailTaken; a subject already bound to a user is
// users.ErrSubjectTaken.
//
// Concurrent creates share transactions (group commit): each caller gets
// the answer it would get alone, but a caller whose ctx ends returns at once
// while its batch, if it has started, runs on: its user is then committed
// with its welcome job, or not at all, and the caller cannot tell which. A
// create that waits longer than the acquire timeout for a batch to take it
// is users.ErrUnavailable, as a wait for a pooled connection is.
func (s *Users) Create(ctx context.Context, in users.NewUser) (users.User, error) {
	if s.creates == nil {
		c := &call[users.NewUser, users.User]{Ctx: ctx, In: in}
		s.createAll(ctx, []*call[users.NewUser, users.User]{c})
		return c.Out, c.Err
	}
	u, err := s.creates.do(ctx, in, s.db.acquireTimeout)
	if errors.Is(err, errWaitedTooLong) {
		err = fmt.Errorf("create user: %w: %w", users.ErrUnavailable, err)
	}
	return u, err
}

// runBatch runs one batch of creates in a context of its own, so that no
// caller's cancellation fails its neighbours. It keeps the first caller's
// values (its trace, so a lone create's SQL stays under its request).
func (s *Users) runBatch(batch []*call[users.NewUser, users.User]) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].Ctx), s.opts.batchTimeout)
	defer cancel()
	if s.opts.tracer != nil {
		var span trace.Span
		ctx, span = s.opts.tracer.Start(ctx, "users.create_batch", trace.WithAttributes(batchSize.Int(len(batch))))
		defer span.End()
		link := trace.Link{SpanContext: span.SpanContext()}
		for _, c := range batch {
			trace.SpanFromContext(c.Ctx).AddLink(link)
		}
	}
	s.createAll(ctx, batch)
}

// createAll inserts a batch and retries on their own the creates that a
// batch-wide failure or a vanished conflict may have failed wrongly.
func (s *Users) createAll(ctx context.Context, batch []*call[users.NewUser, users.User]) {
	if err := s.insertBatch(ctx, batch); len(batch) > 1 && retryAlone(err) {
		// The batch failed for a reason one row may have caused: try each
		// on its own, so a bad row cannot fail its neighbours.
		for _, c := range batch {
			c.Out, c.Err = users.User{}, nil
			s.insertBatch(ctx, []*call[users.NewUser, users.User]{c})
		}
	}
	for _, c := range batch {
		if errors.Is(c.Err, errConflictVanished) {
			c.Out, c.Err = users.User{}, nil
			s.insertBatch(ctx, []*call[users.NewUser, users.User]{c})
		}
	}
}

// retryAlone reports whether a failed batch is worth retrying a create at
// a time: not when PostgreSQL cannot be reached or time ran out, which
// would only fail again, slower.
func retryAlone(err error) bool {
	return err != nil && !errors.Is(err, users.ErrUnavailable) &&
		!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
}

// insertBatch inserts the batch's users in one statement and their create
// hook (the welcome jobs) in the same transaction, and sets every call's
// outcome. A row that conflicts (its email, in any case, or its subject is
// taken, also by an earlier row of the batch) is skipped and its caller
// told why; the others commit. When the transaction fails, every call gets
// its error, which insertBatch returns too (a conflict of one row is that
// call's answer, not the batch's failure).
func (s *Users) insertBatch(ctx context.Context, batch []*call[users.NewUser, users.User]) error {
	n := len(batch)
	ids := make([]pgUUID, n)
	emails, names := make([]string, n), make([]string, n)
	subjects := make([]*string, n)
	out := make([]users.User, n)
	for i, c := range batch {
		id, err := uuid.NewV7()
		if err != nil {
			err = fmt.Errorf("create user: new id: %w", err)
			for _, c := range batch {
				c.Err = err
			}
			return err
		}
		ids[i], emails[i], names[i], subjects[i] = pgUUID(id), c.In.Email, c.In.FullName, nullable(c.In.Subject)
		out[i] = users.User{ID: id, Email: c.In.Email, FullName: c.In.FullName, Subject: c.In.Subject, Version: 1}
	}
	errs := make([]error, n)
	pos, err := s.db.inTxAt(ctx, func(tx pgx.Tx) error {
		// unnest keeps the order, so of two rows with one email the first
		// goes in. The created events in the same statement: one round
		// trip, and exactly the rows that went in.
		rows, err := tx.Query(ctx, `
			WITH ins AS (
			        INSERT INTO users (id, email, full_name, subject)
			        SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
			        ON CONFLICT DO NOTHING
			        RETURNING id, email, full_name, created_at),
			     ev AS (
			        INSERT INTO user_events (type, user_id, email, full_name, created_at, updated_at, version)
			        SELECT 1, id, email, full_name, created_at, created_at, 1 FROM ins)
			SELECT id, created_at FROM ins`, ids, emails, names, subjects)
		if err != nil {
			return err
		}
		created := make(map[[16]byte]time.Time, n)
		var id [16]byte
		var at time.Time
		if _, err := pgx.ForEachRow(rows, []any{(*pgUUID)(&id), &at}, func() error { created[id] = at; return nil }); err != nil {
			return err
		}
		inserted := make([]users.User, 0, len(created))
		for i := range out {
			if at, ok := created[out[i].ID]; ok {
				out[i].CreatedAt, out[i].UpdatedAt = at, at
				inserted = append(inserted, out[i])
			}
		}
		if len(inserted) < n {
			if err := s.explainConflicts(ctx, tx, out, created, errs); err != nil {
				return err
			}
		}
		if s.hooks.OnCreate != nil && len(inserted) > 0 {
			return s.hooks.OnCreate(ctx, tx, inserted)
		}
		return nil
	})
	for i, c := range batch {
		switch {
		case err != nil:
			c.Err = fmt.Errorf("create user: %w", err)
		case errs[i] != nil:
			c.Err = fmt.Errorf("create user: %w", errs[i])
		default:
			c.Out = out[i]
			// The caller's own context: its transport answers with the
			// position (a batch runs in the first caller's).
			users.NoteWrite(c.Ctx, pos)
		}
	}
	return err
}

// explainConflicts finds, for each row the insert skipped, what it collided
// with: a user with its email regardless of case (users.ErrEmailTaken), else one
// with its subject (users.ErrSubjectTaken). PostgreSQL's lower() decides, as the
// unique index does. The rows the batch inserted are visible here, so
// duplicates within the batch are found too.
func (s *Users) explainConflicts(ctx context.Context, tx pgx.Tx, batch []users.User, created map[[16]byte]time.Time, errs []error) error {
	var skipped []int
	var emails []string
	var subjects []*string
	for i, u := range batch {
		if _, ok := created[u.ID]; !ok {
			skipped = append(skipped, i)
			emails = append(emails, u.Email)
			subjects = append(subjects, nullable(u.Subject))
		}
	}
	rows, err := tx.Query(ctx, `
		SELECT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower(t.e)),
		       t.s IS NOT NULL AND EXISTS (SELECT 1 FROM users WHERE subject = t.s)
		  FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(e, s, n)
		 ORDER BY t.n`, emails, subjects)
	if err != nil {
		return err
	}
	k := 0
	var emailTaken, subjectTaken bool
	_, err = pgx.ForEachRow(rows, []any{&emailTaken, &subjectTaken}, func() error {
		switch i := skipped[k]; {
		case emailTaken:
			errs[i] = users.ErrEmailTaken
		case subjectTaken:
			errs[i] = users.ErrSubjectTaken
		default:
			// What it collided with is gone again (deleted meanwhile).
			errs[i] = errConflictVanished
		}
		k++
		return nil
	})
	return err
}

// errConflictVanished is a row skipped for a conflict that no longer
// exists; the create is worth trying again on its own.
var errConflictVanished = errors.New("insert skipped for a conflict that has since gone")
