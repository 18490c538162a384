package users

import (
	"context"
	"slices"
)

// Scopes a token can grant.
const (
	ScopeRead  = "users:read"
	ScopeWrite = "users:write"
)

// Principal is an authenticated caller: the token's subject and the scopes
// it was granted. The auth package makes them from verified tokens; one
// Principal may be shared by every request that presents the same token,
// so it must not be modified.
type Principal struct {
	Subject string
	Scopes  []string
}

// Has reports whether the principal was granted scope.
func (p *Principal) Has(scope string) bool { return slices.Contains(p.Scopes, scope) }

// Rule says who may make one call. The zero Rule allows nobody.
type Rule struct {
	Public        bool   // no token needed, and never rate limited
	Scope         string // a token with this scope may make the call
	Self          bool   // without the scope, a token may make it on its own user (bound by subject)
	Authenticated bool   // any valid token (routes that only answer 405)
}

// Policy says who may call each operation of the users service, by the
// method name of users.v1.UserService. A method without a row is refused;
// a test walks the service descriptor to keep the table complete.
var Policy = map[string]Rule{
	"CreateUser": {Scope: ScopeWrite, Self: true}, // self sign-up: one user bound to the caller
	"GetUser":    {Scope: ScopeRead, Self: true},
	"ListUsers":  {Scope: ScopeRead}, // the email filter too
	"UpdateUser": {Scope: ScopeWrite, Self: true},
	"DeleteUser": {Scope: ScopeWrite, Self: true},

	"ListUserEvents":  {Scope: ScopeRead},
	"WatchUserEvents": {Scope: ScopeRead},

	"CreateWebhook": {Scope: ScopeWebhooksAdmin},
	"ListWebhooks":  {Scope: ScopeWebhooksAdmin},
	"DeleteWebhook": {Scope: ScopeWebhooksAdmin},
}

// Grant is what the policy allowed one call: everything the operation
// does, or only acting on the caller's own user. The zero Grant allows
// nothing, so an operation reached without a decision refuses.
type Grant struct {
	all     bool
	subject string // with !all: the caller, whose own user alone may be touched
	scope   string // with !all: the scope that would allow everything
}

// GrantAll allows the operation on any user (the token has the scope, or
// authentication is off).
func GrantAll() Grant { return Grant{all: true} }

// Decide applies r to p; p is nil when authentication is off, which
// allows every call that has a rule. A nil r is a call without a rule.
func Decide(r *Rule, p *Principal) (Grant, error) {
	switch {
	case r == nil:
		return Grant{}, &DeniedError{"this call is not in usersd's policy"}
	case r.Public, r.Authenticated, p == nil:
		return GrantAll(), nil
	case r.Scope != "" && p.Has(r.Scope):
		return GrantAll(), nil
	case r.Self && p.Subject != "":
		return Grant{subject: p.Subject, scope: r.Scope}, nil
	}
	return Grant{}, &DeniedError{"this call needs the " + r.Scope + " scope"}
}

type grantKey struct{}

// WithGrant returns ctx carrying g, which the Service's operations obey.
// The transport's guard decides it once per request.
func WithGrant(ctx context.Context, g Grant) context.Context {
	return context.WithValue(ctx, grantKey{}, g)
}

func grantOf(ctx context.Context) Grant {
	g, _ := ctx.Value(grantKey{}).(Grant)
	return g
}

// DeniedError is a caller without permission: permission_denied (403).
type DeniedError struct{ msg string }

func (e *DeniedError) Error() string { return "permission denied: " + e.msg }

var errOwnOnly = &DeniedError{"without the needed scope a token may act only on its own user"}

// mayActOn is the self rule, checked once the user is known: under a self
// grant only a user bound to the caller. found is false for an id that
// does not exist, which is refused the same way, so that a caller cannot
// tell someone else's id from an unused one.
func (g Grant) mayActOn(owner string, found bool) error {
	switch {
	case g.all:
		return nil
	case g.subject == "":
		return &DeniedError{"no grant"}
	case found && owner == g.subject:
		return nil
	}
	return errOwnOnly
}

// boundSubject is the subject a call is bound to: the caller's under a
// self grant (a new user is bound to it; a change must find the user bound
// to it), none under a full grant.
func (g Grant) boundSubject() (string, error) {
	switch {
	case g.all:
		return "", nil
	case g.subject != "":
		return g.subject, nil
	}
	return "", &DeniedError{"no grant"}
}

// requireAll allows what is not about one's own user (lists, the feed,
// webhooks) only under a full grant.
func (g Grant) requireAll() error {
	switch {
	case g.all:
		return nil
	case g.subject != "" && g.scope != "":
		return &DeniedError{"this call needs the " + g.scope + " scope"}
	}
	return &DeniedError{"no grant"}
}
