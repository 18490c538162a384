// Package auth verifies the bearer tokens of usersd's callers: JWTs signed
// by the configured OpenID issuer, checked against the issuer's JWKS. It
// knows nothing about routes or policy; it answers who the caller is.
package auth

import (
	"context"
	"slices"

	"connectrpc.com/authn"
)

// Principal is an authenticated caller: the token's subject and the scopes
// it was granted. A Principal is shared between requests that present the
// same token and must not be modified.
type Principal struct {
	Subject string
	Scopes  []string
}

// Has reports whether the principal was granted scope.
func (p *Principal) Has(scope string) bool { return slices.Contains(p.Scopes, scope) }

// FromContext returns the principal that the authentication middleware
// attached to ctx (through connectrpc.com/authn), or nil.
func FromContext(ctx context.Context) *Principal {
	p, _ := authn.GetInfo(ctx).(*Principal)
	return p
}

// WithPrincipal attaches p to ctx, as the authentication middleware does.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return authn.SetInfo(ctx, p)
}
