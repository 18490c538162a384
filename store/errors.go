package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/acme/usersd/users"
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
			return errors.Join(users.ErrEmailTaken, err)
		case pgErr.Code == "23505" && pgErr.ConstraintName == subjectKey:
			return errors.Join(users.ErrSubjectTaken, err)
		case pgErr.Code[:2] == "08", // connection exception
			pgErr.Code == "53300",                                               // too many connections
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03": // shutting down, crashed, starting
			return errors.Join(users.ErrUnavailable, err)
		}
		return err
	}
	if errors.Is(err, users.ErrUnavailable) {
		return err
	}
	if isConnectionLoss(err) {
		return errors.Join(users.ErrUnavailable, err)
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
