package auth

import "errors"

// ErrUnavailable means the issuer's keys are not known yet (discovery or the
// first JWKS fetch has not succeeded), so no token can be checked.
var ErrUnavailable = errors.New("authentication is temporarily unavailable: the token issuer's keys are not loaded yet")

// TokenError is a missing or invalid bearer token. Reason is safe to show to
// the client: it never holds any part of the token.
type TokenError struct {
	Reason string
	err    error // the verifier's detail, for logs
}

func (e *TokenError) Error() string { return e.Reason }
func (e *TokenError) Unwrap() error { return e.err }

// ErrNoToken is a request without a bearer token.
var ErrNoToken = &TokenError{Reason: "a bearer token is required: send the header Authorization: Bearer TOKEN"}
