package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/acme/usersd/users"
)

// Hooks run inside the transactions that change users, so that work queued
// for a user (River jobs) commits or rolls back with it. An error from a
// hook rolls the change back.
type Hooks struct {
	OnCreate func(ctx context.Context, tx pgx.Tx, created []users.User) error // after the insert of one batch
	OnDelete func(ctx context.Context, tx pgx.Tx, id uuid.UUID) error         // after the delete
}

// Users runs the queries on the users table.
type Users struct {
	db       *DB
	replicas *Replicas // nil: every read on the primary
	hooks    Hooks
	creates  *groupCommit[users.NewUser, users.User] // nil: every create its own transaction
	opts     usersOptions
}

type usersOptions struct {
	replicas     *Replicas
	groupCommit  bool
	batchTimeout time.Duration
	tracer       trace.Tracer
}

// UsersOption adjusts NewUsers.
type UsersOption func(*usersOptions)

// WithGroupCommit turns group commit of creates on (the default) or off,
// when every create runs its own transaction (CREATE_BATCH=off, a
// diagnostic).
func WithGroupCommit(on bool) UsersOption { return func(o *usersOptions) { o.groupCommit = on } }

// WithBatchTimeout bounds one batch of creates, which runs on after its
// callers give up (default 15s, the request timeout).
func WithBatchTimeout(d time.Duration) UsersOption {
	return func(o *usersOptions) {
		if d > 0 {
			o.batchTimeout = d
		}
	}
}

// WithReplicas routes reads (Get, List, FindByEmail and the change feed)
// through r.
func WithReplicas(r *Replicas) UsersOption { return func(o *usersOptions) { o.replicas = r } }

// WithTracer makes every batch of creates a span, linked to from the spans
// of the requests in it. Without it batches are not traced (their SQL still
// is, under the first request of the batch).
func WithTracer(t trace.Tracer) UsersOption { return func(o *usersOptions) { o.tracer = t } }

// NewUsers returns the user store.
func NewUsers(db *DB, hooks Hooks, opts ...UsersOption) *Users {
	o := usersOptions{groupCommit: true, batchTimeout: 15 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Users{db: db, hooks: hooks, opts: o, replicas: o.replicas}
	if o.groupCommit {
		s.creates = newGroupCommit(maxBatch, int(min(maxBatchSlots, db.Pool.Config().MaxConns)), s.runBatch)
	}
	return s
}

// userLock takes the transaction-level advisory lock of the user $1 (a
// uuid), which every change of a user takes before it writes.
const userLock = `pg_advisory_xact_lock(hashtextextended($1::uuid::text, 0))`

// userColumns are what every query of a whole user reads, in scanUser's order.
const userColumns = `id, email, full_name, created_at, coalesce(updated_at, created_at) AS updated_at, version, coalesce(subject, '') AS subject`

func scanUser(row pgx.Row, u *users.User) error {
	return row.Scan((*pgUUID)(&u.ID), &u.Email, &u.FullName, &u.CreatedAt, &u.UpdatedAt, &u.Version, &u.Subject)
}

// Get returns the user with the given id, or users.ErrNotFound. It may be
// served by a replica (see Replicas).
func (s *Users) Get(ctx context.Context, id uuid.UUID) (users.User, error) {
	var u users.User
	err := s.read(ctx, func(q querier) error {
		var err error
		u, _, err = getUser(ctx, q, id)
		return err
	})
	if err != nil {
		return users.User{}, fmt.Errorf("get user: %w", err)
	}
	return u, nil
}

// GetForWelcome returns the user and whether its welcome mail was recorded
// as sent, from the primary: the job runs right after the create, which a
// replica may not have replayed yet.
func (s *Users) GetForWelcome(ctx context.Context, id uuid.UUID) (users.User, bool, error) {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return users.User{}, false, fmt.Errorf("get user for welcome: %w", err)
	}
	defer conn.Release()
	u, welcomed, err := getUser(ctx, conn, id)
	if err != nil {
		return users.User{}, false, fmt.Errorf("get user for welcome: %w", err)
	}
	return u, welcomed, nil
}

func getUser(ctx context.Context, q querier, id uuid.UUID) (users.User, bool, error) {
	var u users.User
	var welcomed bool
	err := q.QueryRow(ctx,
		`SELECT `+userColumns+`, welcomed_at IS NOT NULL FROM users WHERE id = $1`, pgUUID(id),
	).Scan((*pgUUID)(&u.ID), &u.Email, &u.FullName, &u.CreatedAt, &u.UpdatedAt, &u.Version, &u.Subject, &welcomed)
	if errors.Is(err, pgx.ErrNoRows) {
		return users.User{}, false, users.ErrNotFound
	}
	return u, welcomed, classify(ctx, err)
}

// List returns up to limit users older than the user with id before (all
// users when before is uuid.Nil), newest first, and whether more follow.
// Keyset pagination over the UUIDv7 primary key: every page costs the same,
// and rows inserted during a walk never shift it.
func (s *Users) List(ctx context.Context, before uuid.UUID, limit int) ([]users.User, bool, error) {
	var page []users.User
	err := s.read(ctx, func(q querier) error {
		// One extra row tells whether another page follows.
		var rows pgx.Rows
		var err error
		if before == uuid.Nil {
			rows, err = q.Query(ctx,
				`SELECT `+userColumns+` FROM users ORDER BY id DESC LIMIT $1`, limit+1)
		} else {
			rows, err = q.Query(ctx,
				`SELECT `+userColumns+` FROM users WHERE id < $1 ORDER BY id DESC LIMIT $2`, pgUUID(before), limit+1)
		}
		if err != nil {
			return classify(ctx, err)
		}
		page = make([]users.User, 0, limit+1)
		var u users.User
		_, err = pgx.ForEachRow(rows, []any{(*pgUUID)(&u.ID), &u.Email, &u.FullName, &u.CreatedAt, &u.UpdatedAt, &u.Version, &u.Subject}, func() error {
			page = append(page, u)
			return nil
		})
		return classify(ctx, err)
	})
	if err != nil {
		return nil, false, fmt.Errorf("list users: %w", err)
	}
	if len(page) > limit {
		return page[:limit], true, nil
	}
	return page, false, nil
}

// FindByEmail returns the user whose email equals email regardless of
// case, or users.ErrNotFound.
func (s *Users) FindByEmail(ctx context.Context, email string) (users.User, error) {
	var u users.User
	err := s.read(ctx, func(q querier) error {
		err := scanUser(q.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE lower(email) = lower($1)`, email), &u)
		if errors.Is(err, pgx.ErrNoRows) {
			return users.ErrNotFound
		}
		return classify(ctx, err)
	})
	if err != nil {
		return users.User{}, fmt.Errorf("find user by email: %w", err)
	}
	return u, nil
}

// Update applies p to the user with id if g holds, in one statement, so
// two updates guarded by the same version cannot both win. It returns the
// user as stored, with a new version. It expects validated input. Errors:
// users.ErrNotFound, users.ErrNotOwner (g.Subject), users.ErrStale (g.Version),
// users.ErrEmailTaken.
func (s *Users) Update(ctx context.Context, id uuid.UUID, p users.Patch, g users.Guard) (users.User, error) {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return users.User{}, fmt.Errorf("update user: %w", err)
	}
	defer conn.Release()
	var u users.User
	// The user's lock is taken before the update writes, so before the
	// transaction gets its xid: of two changes to one user the later
	// commits with the larger xid, and the feed has them in version order.
	err = scanUser(conn.QueryRow(ctx, `
		WITH lock AS MATERIALIZED (SELECT `+userLock+`),
		     upd AS (
		        UPDATE users SET email = coalesce($2, email), full_name = coalesce($3, full_name),
		               version = version + 1, updated_at = now()
		          FROM lock
		         WHERE id = $1 AND ($4::bigint = 0 OR version = $4) AND ($5::text = '' OR subject = $5)
		        RETURNING `+userColumns+`),
		     ev AS (
		        INSERT INTO user_events (type, user_id, email, full_name, created_at, updated_at, version)
		        SELECT 2, id, email, full_name, created_at, updated_at, version FROM upd)
		SELECT * FROM upd`,
		pgUUID(id), p.Email, p.FullName, g.Version, g.Subject,
	), &u)
	if errors.Is(err, pgx.ErrNoRows) {
		err = s.whyNot(ctx, conn, id, g)
	}
	if err != nil {
		return users.User{}, fmt.Errorf("update user: %w", classify(ctx, err))
	}
	// The statement committed on its own: the position now is past it.
	var pos uint64
	if err := conn.QueryRow(ctx, `SELECT `+walPosition).Scan(&pos); err != nil {
		return users.User{}, fmt.Errorf("update user: read the commit position: %w", classify(ctx, err))
	}
	users.NoteWrite(ctx, pos)
	return u, nil
}

// Delete erases the user with id if g holds, and runs the delete hook in
// the same transaction. Errors: users.ErrNotFound, users.ErrNotOwner, users.ErrStale.
func (s *Users) Delete(ctx context.Context, id uuid.UUID, g users.Guard) error {
	pos, err := s.db.inTxAt(ctx, func(tx pgx.Tx) error {
		// The lock first, as in Update; then the row, the personal data of
		// the user's earlier events, and the deletion's own event.
		if _, err := tx.Exec(ctx, `SELECT `+userLock, pgUUID(id)); err != nil {
			return err
		}
		var deleted int
		err := tx.QueryRow(ctx, `
			WITH del AS (
			        DELETE FROM users WHERE id = $1 AND ($2::bigint = 0 OR version = $2) AND ($3::text = '' OR subject = $3)
			        RETURNING id),
			     erase AS (
			        UPDATE user_events SET email = NULL, full_name = NULL, erased = true
			         WHERE user_id = $1 AND NOT erased AND EXISTS (SELECT 1 FROM del)),
			     ev AS (
			        INSERT INTO user_events (type, user_id) SELECT 3, id FROM del)
			SELECT count(*) FROM del`,
			pgUUID(id), g.Version, g.Subject).Scan(&deleted)
		if err != nil {
			return err
		}
		if deleted == 0 {
			return s.whyNot(ctx, tx, id, g)
		}
		if s.hooks.OnDelete != nil {
			return s.hooks.OnDelete(ctx, tx, id)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	users.NoteWrite(ctx, pos)
	return nil
}

// whyNot says why a guarded change of user id touched no row.
func (s *Users) whyNot(ctx context.Context, q querier, id uuid.UUID, g users.Guard) error {
	var version int64
	var subject string
	err := q.QueryRow(ctx, `SELECT version, coalesce(subject, '') FROM users WHERE id = $1`, pgUUID(id)).Scan(&version, &subject)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return users.ErrNotFound
	case err != nil:
		return err
	case g.Subject != "" && subject != g.Subject:
		return users.ErrNotOwner
	}
	// The version differs, or the user changed between the two statements.
	return users.ErrStale
}

// MarkWelcomedTx records, inside tx, that the welcome mail of user id was
// sent.
func (s *Users) MarkWelcomedTx(ctx context.Context, tx pgx.Tx, id uuid.UUID) error {
	if _, err := tx.Exec(ctx, `UPDATE users SET welcomed_at = now() WHERE id = $1`, pgUUID(id)); err != nil {
		return fmt.Errorf("mark welcomed: %w", classify(ctx, err))
	}
	return nil
}

// nullable stores the empty string as NULL.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

var _ users.Storage = (*Users)(nil)
