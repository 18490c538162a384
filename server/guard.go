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
)

// guard admits requests to the handlers behind it: authentication, then
// the rate limits, then the policy table, all before any handler reads the
// request body. Public routes pass untouched. Refusals go out in the
// request's own protocol: connectrpc.com/authn writes them for Connect, gRPC
// and gRPC-Web; the REST shim gets its JSON error body.
type guard struct {
	verifier *auth.Verifier // nil: authentication is off (AUTH_DISABLED)
	policy   *policyTable
	byUser   *keyedLimiter[string]     // per principal
	byIP     *keyedLimiter[netip.Addr] // per client IP, for requests without a valid token
	trusted  []netip.Prefix            // proxies whose X-Forwarded-For is believed
	log      *slog.Logger

	next http.Handler
	rpc  http.Handler // next behind authn's middleware
}

func newGuard(next http.Handler, g *guard, handlerOpts []connect.HandlerOption) *guard {
	g.next = next
	g.rpc = authn.NewMiddleware(g.authenticateRPC, handlerOpts...).Wrap(next)
	return g
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a := accessOf(r.Context())
	a.route, a.rule = g.policy.lookup(r)
	if a.rule != nil && a.rule.public {
		a.grant = grantAll
		g.next.ServeHTTP(w, r)
		return
	}
	if isRPC(r) {
		g.rpc.ServeHTTP(w, r)
		return
	}
	p, err := g.admit(r.Context(), r)
	if err != nil {
		writeRESTError(w, r, g.log, err)
		return
	}
	if p != nil {
		r = r.WithContext(auth.WithPrincipal(r.Context(), p))
	}
	g.next.ServeHTTP(w, r)
}

// authenticateRPC is admit as an authn.AuthFunc: errors as Connect errors,
// and no info (rather than a typed nil) when authentication is off.
func (g *guard) authenticateRPC(ctx context.Context, r *http.Request) (any, error) {
	p, err := g.admit(ctx, r)
	if err != nil {
		ce := connectError(ctx, g.log, err)
		setOutcome(ctx, ce.Code().String())
		return nil, ce
	}
	if p == nil {
		return nil, nil
	}
	return p, nil
}

// admit authenticates r, applies the rate limits and the policy, and
// records the subject and the grant in the access record.
func (g *guard) admit(ctx context.Context, r *http.Request) (*auth.Principal, error) {
	a := accessOf(ctx)
	now := time.Now()
	p, err := g.authenticate(ctx, r)
	if err != nil || p == nil {
		// No valid token (or authentication off): the client IP's limit,
		// when there is one.
		if g.byIP != nil {
			if ok, wait := g.byIP.allow(clientIP(r, g.trusted), now); !ok {
				return nil, &rateLimitError{wait}
			}
		}
		if err != nil {
			return nil, err
		}
	} else {
		a.subject = p.Subject
		if ok, wait := g.byUser.allow(p.Subject, now); !ok {
			return nil, &rateLimitError{wait}
		}
	}
	gr, err := decide(a.rule, p)
	if err != nil {
		return nil, err
	}
	a.grant = gr
	return p, nil
}

// authenticate returns the caller's principal, nil when authentication is
// off.
func (g *guard) authenticate(ctx context.Context, r *http.Request) (*auth.Principal, error) {
	if g.verifier == nil {
		return nil, nil
	}
	token, ok := authn.BearerToken(r)
	if !ok {
		return nil, auth.ErrNoToken
	}
	return g.verifier.Verify(ctx, token)
}

// accessOf returns the request's access record. The access log middleware
// puts one in every request's context; a bare one stands in without it.
func accessOf(ctx context.Context) *access {
	if a, ok := ctx.Value(accessKey{}).(*access); ok {
		return a
	}
	return &access{}
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
