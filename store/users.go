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
	Subject   string // the token subject bound at self sign-up; empty if none
}

// NewUser is what Create stores.
type NewUser struct {
	Email    string
	FullName string
	Subject  string // binds the user to a token subject (self sign-up); empty for none
}

// CreateHook runs inside the transaction that inserts a user, after the
// insert; an error from it rolls the user back. Used to enqueue jobs
// transactionally.
type CreateHook func(ctx context.Context, tx pgx.Tx, u User) error

// Users runs the queries on the users table.
type Users struct {
	db       *DB
	onCreate CreateHook
}

// NewUsers returns the user store. onCreate may be nil.
func NewUsers(db *DB, onCreate CreateHook) *Users {
	return &Users{db: db, onCreate: onCreate}
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
	u := User{ID: id, Email: in.Email, FullName: in.FullName, Subject: in.Subject}

	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx,
			`INSERT INTO users (id, email, full_name, subject) VALUES ($1, $2, $3, $4) RETURNING created_at`,
			pgUUID(u.ID), u.Email, u.FullName, nullable(u.Subject),
		).Scan(&u.CreatedAt)
		if err != nil {
			return err
		}
		if s.onCreate != nil {
			return s.onCreate(ctx, tx, u)
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
		`SELECT id, email, full_name, created_at, coalesce(subject, ''), welcomed_at IS NOT NULL FROM users WHERE id = $1`, pgUUID(id),
	).Scan((*pgUUID)(&u.ID), &u.Email, &u.FullName, &u.CreatedAt, &u.Subject, &welcomed)
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
			`SELECT id, email, full_name, created_at FROM users ORDER BY id DESC LIMIT $1`, limit+1)
	} else {
		rows, err = conn.Query(ctx,
			`SELECT id, email, full_name, created_at FROM users WHERE id < $1 ORDER BY id DESC LIMIT $2`, pgUUID(before), limit+1)
	}
	if err != nil {
		return nil, false, fmt.Errorf("list users: %w", classify(ctx, err))
	}
	users := make([]User, 0, limit+1)
	var u User
	_, err = pgx.ForEachRow(rows, []any{(*pgUUID)(&u.ID), &u.Email, &u.FullName, &u.CreatedAt}, func() error {
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
