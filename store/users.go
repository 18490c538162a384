package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// User is a stored user.
type User struct {
	ID        uuid.UUID
	Email     string
	FullName  string
	CreatedAt time.Time
	UpdatedAt time.Time // CreatedAt until the first update
	Version   int64     // 1 at creation, one more on every update
	Subject   string    // the token subject bound at self sign-up; empty if none
}

// NewUser is what Create stores.
type NewUser struct {
	Email    string
	FullName string
	Subject  string // binds the user to a token subject (self sign-up); empty for none
}

// Patch is what Update changes; nil fields stay as they are.
type Patch struct {
	Email    *string
	FullName *string
}

// Guard makes an update or a delete conditional on the stored user, checked
// atomically with the change.
type Guard struct {
	Version int64  // the version the caller read; 0 accepts any
	Subject string // the user must be bound to this subject; "" accepts any
}

// Hooks run inside the transactions that change users, so that work queued
// for a user (River jobs) commits or rolls back with it. An error from a
// hook rolls the change back.
type Hooks struct {
	OnCreate func(ctx context.Context, tx pgx.Tx, u User) error       // after the insert
	OnDelete func(ctx context.Context, tx pgx.Tx, id uuid.UUID) error // after the delete
}

// Users runs the queries on the users table.
type Users struct {
	db    *DB
	hooks Hooks
}

// NewUsers returns the user store.
func NewUsers(db *DB, hooks Hooks) *Users {
	return &Users{db: db, hooks: hooks}
}

// userColumns are what every query of a whole user reads, in scanUser's order.
const userColumns = `id, email, full_name, created_at, coalesce(updated_at, created_at), version, coalesce(subject, '')`

func scanUser(row pgx.Row, u *User) error {
	return row.Scan((*pgUUID)(&u.ID), &u.Email, &u.FullName, &u.CreatedAt, &u.UpdatedAt, &u.Version, &u.Subject)
}

// Create inserts a user with a new UUIDv7 id, and runs the create hook in the
// same transaction. It expects validated input. An email that another user
// has, ignoring case, is ErrEmailTaken; a subject already bound to a user is
// ErrSubjectTaken.
func (s *Users) Create(ctx context.Context, in NewUser) (User, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return User{}, fmt.Errorf("create user: new id: %w", err)
	}
	u := User{ID: id, Email: in.Email, FullName: in.FullName, Subject: in.Subject, Version: 1}

	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx,
			`INSERT INTO users (id, email, full_name, subject) VALUES ($1, $2, $3, $4) RETURNING created_at`,
			pgUUID(u.ID), u.Email, u.FullName, nullable(u.Subject),
		).Scan(&u.CreatedAt)
		if err != nil {
			return err
		}
		u.UpdatedAt = u.CreatedAt
		if s.hooks.OnCreate != nil {
			return s.hooks.OnCreate(ctx, tx, u)
		}
		return nil
	})
	if err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	return u, nil
}

// Get returns the user with the given id, or ErrNotFound.
func (s *Users) Get(ctx context.Context, id uuid.UUID) (User, error) {
	u, _, err := s.get(ctx, id)
	if err != nil {
		return User{}, fmt.Errorf("get user: %w", err)
	}
	return u, nil
}

// GetForWelcome returns the user and whether its welcome mail was recorded
// as sent.
func (s *Users) GetForWelcome(ctx context.Context, id uuid.UUID) (User, bool, error) {
	u, welcomed, err := s.get(ctx, id)
	if err != nil {
		return User{}, false, fmt.Errorf("get user for welcome: %w", err)
	}
	return u, welcomed, nil
}

func (s *Users) get(ctx context.Context, id uuid.UUID) (User, bool, error) {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return User{}, false, err
	}
	defer conn.Release()
	var u User
	var welcomed bool
	err = conn.QueryRow(ctx,
		`SELECT `+userColumns+`, welcomed_at IS NOT NULL FROM users WHERE id = $1`, pgUUID(id),
	).Scan((*pgUUID)(&u.ID), &u.Email, &u.FullName, &u.CreatedAt, &u.UpdatedAt, &u.Version, &u.Subject, &welcomed)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, false, ErrNotFound
	}
	return u, welcomed, classify(ctx, err)
}

// List returns up to limit users older than the user with id before (all
// users when before is uuid.Nil), newest first, and whether more follow.
// Keyset pagination over the UUIDv7 primary key: every page costs the same,
// and rows inserted during a walk never shift it.
func (s *Users) List(ctx context.Context, before uuid.UUID, limit int) ([]User, bool, error) {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("list users: %w", err)
	}
	defer conn.Release()

	// One extra row tells whether another page follows.
	var rows pgx.Rows
	if before == uuid.Nil {
		rows, err = conn.Query(ctx,
			`SELECT `+userColumns+` FROM users ORDER BY id DESC LIMIT $1`, limit+1)
	} else {
		rows, err = conn.Query(ctx,
			`SELECT `+userColumns+` FROM users WHERE id < $1 ORDER BY id DESC LIMIT $2`, pgUUID(before), limit+1)
	}
	if err != nil {
		return nil, false, fmt.Errorf("list users: %w", classify(ctx, err))
	}
	users := make([]User, 0, limit+1)
	var u User
	_, err = pgx.ForEachRow(rows, []any{(*pgUUID)(&u.ID), &u.Email, &u.FullName, &u.CreatedAt, &u.UpdatedAt, &u.Version, &u.Subject}, func() error {
		users = append(users, u)
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("list users: %w", classify(ctx, err))
	}
	if len(users) > limit {
		return users[:limit], true, nil
	}
	return users, false, nil
}

// FindByEmail returns the user whose email equals email regardless of
// case, or ErrNotFound.
func (s *Users) FindByEmail(ctx context.Context, email string) (User, error) {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return User{}, fmt.Errorf("find user by email: %w", err)
	}
	defer conn.Release()
	var u User
	err = scanUser(conn.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE lower(email) = lower($1)`, email), &u)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("find user by email: %w", classify(ctx, err))
	}
	return u, nil
}

// Update applies p to the user with id if g holds, in one statement, so
// two updates guarded by the same version cannot both win. It returns the
// user as stored, with a new version. It expects validated input. Errors:
// ErrNotFound, ErrNotOwner (g.Subject), ErrStale (g.Version),
// ErrEmailTaken.
func (s *Users) Update(ctx context.Context, id uuid.UUID, p Patch, g Guard) (User, error) {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return User{}, fmt.Errorf("update user: %w", err)
	}
	defer conn.Release()
	var u User
	err = scanUser(conn.QueryRow(ctx,
		`UPDATE users SET email = coalesce($2, email), full_name = coalesce($3, full_name),
		        version = version + 1, updated_at = now()
		  WHERE id = $1 AND ($4::bigint = 0 OR version = $4) AND ($5::text = '' OR subject = $5)
		RETURNING `+userColumns,
		pgUUID(id), p.Email, p.FullName, g.Version, g.Subject,
	), &u)
	if errors.Is(err, pgx.ErrNoRows) {
		err = s.whyNot(ctx, conn, id, g)
	}
	if err != nil {
		return User{}, fmt.Errorf("update user: %w", classify(ctx, err))
	}
	return u, nil
}

// Delete erases the user with id if g holds, and runs the delete hook in
// the same transaction. Errors: ErrNotFound, ErrNotOwner, ErrStale.
func (s *Users) Delete(ctx context.Context, id uuid.UUID, g Guard) error {
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			`DELETE FROM users WHERE id = $1 AND ($2::bigint = 0 OR version = $2) AND ($3::text = '' OR subject = $3)`,
			pgUUID(id), g.Version, g.Subject)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
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
	return nil
}

// whyNot says why a guarded change of user id touched no row.
func (s *Users) whyNot(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, id uuid.UUID, g Guard) error {
	var version int64
	var subject string
	err := q.QueryRow(ctx, `SELECT version, coalesce(subject, '') FROM users WHERE id = $1`, pgUUID(id)).Scan(&version, &subject)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotFound
	case err != nil:
		return err
	case g.Subject != "" && subject != g.Subject:
		return ErrNotOwner
	}
	// The version differs, or the user changed between the two statements.
	return ErrStale
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
