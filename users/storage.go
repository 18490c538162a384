package users

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
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

// NewUser is what Storage.Create stores.
type NewUser struct {
	Email    string
	FullName string
	Subject  string // binds the user to a token subject (self sign-up); empty for none
}

// Patch is what Storage.Update changes; nil fields stay as they are.
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

// Storage is everything the Service keeps: the users, their change feed
// and the webhooks. store.Users implements it on PostgreSQL and
// userstest.Memory in memory; userstest.TestStorage holds both to the same
// contract. Inputs are validated by the Service before they get here.
type Storage interface {
	UserStore
	Feed
	Webhooks
}

// UserStore keeps users. Every change is also written to the feed, in
// the same transaction: a rolled-back change never appears there.
type UserStore interface {
	// Create stores a new user with a new UUIDv7 id at version 1. An email
	// another user has, ignoring case, is ErrEmailTaken; a subject already
	// bound to a user is ErrSubjectTaken.
	Create(ctx context.Context, in NewUser) (User, error)
	// Get returns the user with id, or ErrNotFound.
	Get(ctx context.Context, id uuid.UUID) (User, error)
	// List returns up to limit users whose id is below before (every user
	// when before is uuid.Nil), highest id (newest) first, and whether more
	// follow.
	List(ctx context.Context, before uuid.UUID, limit int) ([]User, bool, error)
	// FindByEmail returns the user whose email equals email ignoring case,
	// or ErrNotFound.
	FindByEmail(ctx context.Context, email string) (User, error)
	// Update applies p if g holds and returns the user at its new version.
	// Errors: ErrNotFound, ErrNotOwner (g.Subject), ErrStale (g.Version),
	// ErrEmailTaken.
	Update(ctx context.Context, id uuid.UUID, p Patch, g Guard) (User, error)
	// Delete erases the user if g holds, and the personal data (email, full
	// name) of the user's earlier events in the feed. Errors: ErrNotFound,
	// ErrNotOwner, ErrStale.
	Delete(ctx context.Context, id uuid.UUID, g Guard) error
}

// Storage errors. Callers match them with errors.Is; what a Storage wraps
// around them is for logs only.
var (
	ErrNotFound   = errors.New("user not found")
	ErrEmailTaken = errors.New("email already taken")
	// ErrSubjectTaken is a second self sign-up by one token subject.
	ErrSubjectTaken = errors.New("this account already has a user")
	// ErrStale is an update or delete guarded by a version the user no
	// longer has.
	ErrStale = errors.New("the user has changed since it was read")
	// ErrNotOwner is an update or delete guarded by a subject the user is
	// not bound to.
	ErrNotOwner = errors.New("the user belongs to someone else")
	// ErrUnavailable is storage that cannot be reached, or a wait for it
	// that ran out: worth retrying later.
	ErrUnavailable = errors.New("database unavailable")
)
