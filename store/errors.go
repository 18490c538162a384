package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// Domain errors. Callers match them with errors.Is; the wrapped detail is
// for logs only.
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
	ErrNotOwner    = errors.New("the user belongs to someone else")
	ErrUnavailable = errors.New("database unavailable")
)

// Unique indexes, by the names store/ recognises their violations by.
const (
	emailKey   = "users_email_lower_key" // lower(email), migrations/001
	subjectKey = "users_subject_key"     // subject, migrations/003
)

// classify turns a driver error into a domain error, by SQLSTATE and
// constraint name, never by message text. When ctx has ended, the error is
// the context's (a deadline or a cancellation, whatever PostgreSQL said
// about the cancelled statement), so callers can tell it from an outage.
func classify(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch {
		case pgErr.Code == "23505" && pgErr.ConstraintName == emailKey:
			return errors.Join(ErrEmailTaken, err)
		case pgErr.Code == "23505" && pgErr.ConstraintName == subjectKey:
			return errors.Join(ErrSubjectTaken, err)
		case pgErr.Code[:2] == "08", // connection exception
			pgErr.Code == "53300",                                               // too many connections
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03": // shutting down, crashed, starting
			return errors.Join(ErrUnavailable, err)
		}
		return err
	}
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	if isConnectionLoss(err) {
		return errors.Join(ErrUnavailable, err)
	}
	return err
}

// isConnectionLoss reports errors that mean the database went away.
func isConnectionLoss(err error) bool {
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return true
	}
	if _, ok := errors.AsType[*net.OpError](err); ok {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) || pgconn.SafeToRetry(err)
}
