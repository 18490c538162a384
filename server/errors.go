package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/acme/usersd/auth"
	"github.com/acme/usersd/users"
)

// errTooLarge is a request body over its limit.
var errTooLarge = errors.New("request body too large")

// wireError is how one kind of domain error looks on the wire.
type wireError struct {
	code    connect.Code
	status  int    // REST status
	rest    string // REST "error"
	message string // fixed client message; empty means the error's own text, which must be safe to show
}

// The error table (docs/design.md), in one place.
var (
	errInvalid     = wireError{connect.CodeInvalidArgument, http.StatusBadRequest, "validation", ""}
	errNotFound    = wireError{connect.CodeNotFound, http.StatusNotFound, "not_found", "user not found"}
	errConflict    = wireError{connect.CodeAlreadyExists, http.StatusConflict, "conflict", "email already taken"}
	errStale       = wireError{connect.CodeFailedPrecondition, http.StatusPreconditionFailed, "precondition_failed", "the user has changed since that etag was read; read it again"}
	errHasUser     = wireError{connect.CodeAlreadyExists, http.StatusConflict, "conflict", "this account already has a user"}
	errUnauth      = wireError{connect.CodeUnauthenticated, http.StatusUnauthorized, "unauthenticated", ""}
	errForbidden   = wireError{connect.CodePermissionDenied, http.StatusForbidden, "forbidden", ""}
	errRateLimited = wireError{connect.CodeResourceExhausted, http.StatusTooManyRequests, "rate_limited", ""}
	errLarge       = wireError{connect.CodeResourceExhausted, http.StatusRequestEntityTooLarge, "too_large", "request body too large"}
	errTimeout     = wireError{connect.CodeDeadlineExceeded, http.StatusGatewayTimeout, "timeout", "request timed out"}
	errCanceled    = wireError{connect.CodeCanceled, 499, "canceled", "request canceled"}
	errUnavailable = wireError{connect.CodeUnavailable, http.StatusServiceUnavailable, "unavailable", "service temporarily unavailable, retry later"}
	errNoKeys      = wireError{connect.CodeUnavailable, http.StatusServiceUnavailable, "unavailable", "authentication temporarily unavailable, retry later"}
	errInternal    = wireError{connect.CodeInternal, http.StatusInternalServerError, "internal_error", "internal error"}

	errCursorExpired   = wireError{connect.CodeOutOfRange, http.StatusGone, "cursor_expired", ""}
	errNoWebhook       = wireError{connect.CodeNotFound, http.StatusNotFound, "not_found", "webhook not found"}
	errTooManyWebhooks = wireError{connect.CodeResourceExhausted, http.StatusConflict, "limit_reached", ""}
	errShuttingDown    = wireError{connect.CodeUnavailable, http.StatusServiceUnavailable, "unavailable", ""}
)

// sentinels are the domain's error values and their rows of the table.
var sentinels = []struct {
	err  error
	wire wireError
}{
	{users.ErrNotFound, errNotFound},
	{users.ErrEmailTaken, errConflict},
	{users.ErrSubjectTaken, errHasUser},
	{users.ErrStale, errStale},
	{users.ErrCursorExpired, errCursorExpired},
	{users.ErrWebhookNotFound, errNoWebhook},
	{users.ErrTooManyWebhooks, errTooManyWebhooks},
	{users.ErrShuttingDown, errShuttingDown},
}

// toWire classifies err by the table and returns what the client may see.
// Unavailable and internal errors are logged here with their detail, which
// never reaches the client.
func toWire(ctx context.Context, log *slog.Logger, err error) (wireError, string) {
	var fe *users.FieldError
	if errors.As(err, &fe) {
		return errInvalid, fe.Error()
	}
	w, found := errInternal, false
	for _, se := range sentinels {
		if errors.Is(err, se.err) {
			w, found = se.wire, true
			break
		}
	}
	switch {
	case found:
	case isType[*auth.TokenError](err):
		w = errUnauth
	case isType[*users.DeniedError](err):
		w = errForbidden
	case isType[*rateLimitError](err):
		w = errRateLimited
	case errors.Is(err, auth.ErrUnavailable):
		w = errNoKeys
	case errors.Is(err, errTooLarge):
		w = errLarge
	case errors.Is(err, context.DeadlineExceeded):
		w = errTimeout
	case errors.Is(err, context.Canceled):
		w = errCanceled
	case errors.Is(err, users.ErrUnavailable):
		w = errUnavailable
		log.WarnContext(ctx, "database unavailable", "err", err)
	default:
		log.ErrorContext(ctx, "internal error", "err", err)
	}
	if w.message == "" {
		return w, err.Error()
	}
	return w, w.message
}

func isType[E error](err error) bool {
	_, ok := errors.AsType[E](err)
	return ok
}

// connectError turns a domain error into a Connect error by the table.
func connectError(ctx context.Context, log *slog.Logger, err error) *connect.Error {
	if ce, ok := errors.AsType[*connect.Error](err); ok {
		return ce
	}
	w, msg := toWire(ctx, log, err)
	ce := connect.NewError(w.code, errors.New(msg))
	errorHeaders(err, ce.Meta().Set)
	if fe, ok := errors.AsType[*users.FieldError](err); ok {
		if d, derr := connect.NewErrorDetail(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: fe.Field, Description: fe.Message}},
		}); derr == nil {
			ce.AddDetail(d)
		}
	}
	return ce
}
