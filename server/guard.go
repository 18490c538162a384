package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"connectrpc.com/authn"
	"connectrpc.com/connect"

	"github.com/acme/usersd/auth"
	"github.com/acme/usersd/users"
)

// guard admits requests to the handlers behind it: it finds the request's
// rule, then authenticates, applies the rate limits and decides the
// grant, all before any handler reads the request body. Public routes pass
// untouched. An admitted request carries its principal (auth.FromContext)
// and its grant (users.WithGrant) in context values of their own, which
// the domain obeys. Refusals go out in the request's own protocol: a
// Connect error for Connect, gRPC and gRPC-Web, the REST shim's JSON for
// everything else.
type guard struct {
	routes   *routeTable
	verifier *auth.Verifier            // nil: authentication is off (AUTH_DISABLED)
	byUser   *keyedLimiter[string]     // per principal
	byIP     *keyedLimiter[netip.Addr] // per client IP, for requests without a valid token
	trusted  []netip.Prefix            // proxies whose X-Forwarded-For is believed
	log      *slog.Logger
	rpcErrs  *connect.ErrorWriter
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rl, rpc, endpoint := g.routes.lookup(r)
	noteEndpoint(ctx, endpoint)
	if rl != nil && rl.Public {
		g.routes.mux.ServeHTTP(w, r)
		return
	}
	p, grant, err := g.admit(ctx, r, rl)
	if err != nil {
		if rpc {
			ce := connectError(ctx, g.log, err)
			setOutcome(ctx, ce.Code().String())
			_ = g.rpcErrs.Write(w, r, ce)
			return
		}
		writeRESTError(w, r, g.log, err)
		return
	}
	ctx = users.WithGrant(ctx, grant)
	if p != nil {
		ctx = auth.WithPrincipal(ctx, p)
	}
	g.routes.mux.ServeHTTP(w, r.WithContext(ctx))
}

// admit authenticates r, applies the rate limits, and decides what rule
// rl grants the caller.
func (g *guard) admit(ctx context.Context, r *http.Request, rl *users.Rule) (*users.Principal, users.Grant, error) {
	now := time.Now()
	p, err := g.authenticate(ctx, r)
	if err != nil || p == nil {
		// No valid token (or authentication off): the client IP's limit,
		// when there is one.
		if g.byIP != nil {
			if ok, wait := g.byIP.allow(clientIP(r, g.trusted), now); !ok {
				return nil, users.Grant{}, &rateLimitError{wait}
			}
		}
		if err != nil {
			return nil, users.Grant{}, err
		}
	} else {
		noteSubject(ctx, p.Subject)
		if ok, wait := g.byUser.allow(p.Subject, now); !ok {
			return nil, users.Grant{}, &rateLimitError{wait}
		}
	}
	grant, err := users.Decide(rl, p)
	return p, grant, err
}

// authenticate returns the caller's principal, nil when authentication is
// off.
func (g *guard) authenticate(ctx context.Context, r *http.Request) (*users.Principal, error) {
	if g.verifier == nil {
		return nil, nil
	}
	token, ok := authn.BearerToken(r)
	if !ok {
		return nil, auth.ErrNoToken
	}
	return g.verifier.Verify(ctx, token)
}

// errorHeaders are the response headers an error brings: a challenge with
// unauthenticated (RFC 6750), Retry-After when rate limited.
func errorHeaders(err error, set func(key, value string)) {
	if te, ok := errors.AsType[*auth.TokenError](err); ok {
		if te == auth.ErrNoToken {
			set("WWW-Authenticate", `Bearer realm="usersd"`)
		} else {
			set("WWW-Authenticate", `Bearer realm="usersd", error="invalid_token"`)
		}
	}
	if rl, ok := errors.AsType[*rateLimitError](err); ok {
		set("Retry-After", strconv.Itoa(rl.seconds()))
	}
}
