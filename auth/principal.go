// Package auth verifies the bearer tokens of usersd's callers: JWTs signed
// by the configured OpenID issuer, checked against the issuer's JWKS. It
// knows nothing about routes or policy; it answers who the caller is, as a
// users.Principal.
package auth

import (
	"context"

	"github.com/acme/usersd/users"
)

type principalKey struct{}

// FromContext returns the principal that the server's guard attached to
// ctx, or nil.
func FromContext(ctx context.Context) *users.Principal {
	p, _ := ctx.Value(principalKey{}).(*users.Principal)
	return p
}

// WithPrincipal attaches p to ctx.
func WithPrincipal(ctx context.Context, p *users.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}
