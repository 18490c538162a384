package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"

	"github.com/acme/usersd/auth"
	"github.com/acme/usersd/gen/users/v1/usersv1connect"
)

// Scopes a token can grant.
const (
	ScopeRead  = "users:read"
	ScopeWrite = "users:write"
)

// rule says who may make one call. The zero rule allows nobody.
type rule struct {
	public bool   // no token needed, and never rate limited
	scope  string // a token with this scope may make the call
	self   bool   // without the scope, a token may make it on its own user (bound by subject)
	anyone bool   // any valid token (routes that only answer 405)
}

// policy is the authorization table, the one place that says who may call
// what: RPCs by procedure, everything else by its mux pattern. A route or
// procedure missing from it is refused (New will not even register one).
// TestPolicyCoversEveryRoute walks the generated service descriptor and
// the mux to keep it complete.
var policy = map[string]rule{
	usersv1connect.UserServiceCreateUserProcedure: {scope: ScopeWrite, self: true},
	usersv1connect.UserServiceGetUserProcedure:    {scope: ScopeRead, self: true},
	usersv1connect.UserServiceListUsersProcedure:  {scope: ScopeRead}, // the email filter too
	usersv1connect.UserServiceUpdateUserProcedure: {scope: ScopeWrite, self: true},
	usersv1connect.UserServiceDeleteUserProcedure: {scope: ScopeWrite, self: true},

	"POST /users":        {scope: ScopeWrite, self: true},
	"GET /users/{id}":    {scope: ScopeRead, self: true},
	"GET /users":         {scope: ScopeRead}, // ?email= too
	"PATCH /users/{id}":  {scope: ScopeWrite, self: true},
	"DELETE /users/{id}": {scope: ScopeWrite, self: true},
	"/users":             {anyone: true}, // other methods: 405
	"/users/{id}":        {anyone: true},

	"/" + grpchealth.HealthV1ServiceName + "/":        {public: true},
	"/" + grpcreflect.ReflectV1ServiceName + "/":      {public: true},
	"/" + grpcreflect.ReflectV1AlphaServiceName + "/": {public: true},
	"GET /healthz":      {public: true},
	"GET /livez":        {public: true},
	"GET /metrics":      {public: true},
	"GET /config.json":  {public: true}, // the web page's sign-in settings
	"GET /openapi.json": {public: true}, // the REST shim's OpenAPI document
	"/":                 {public: true}, // the web page's static files
}

var noRoute = rule{public: true}

// usersServicePath is the mux pattern of the Connect handler; its
// procedures have rules of their own.
const usersServicePath = "/" + usersv1connect.UserServiceName + "/"

// policyTable finds the rule of a request before the mux routes it.
type policyTable struct {
	rules      map[string]*rule // shared and never modified once built: lookup hands them out
	mux        *http.ServeMux
	registered []string // patterns, in the order handle got them
}

// newPolicyTable returns a table of rules over a new mux.
func newPolicyTable(rules map[string]rule) *policyTable {
	t := &policyTable{rules: make(map[string]*rule, len(rules)), mux: http.NewServeMux()}
	for k, rl := range rules {
		t.rules[k] = &rl
	}
	return t
}

// handle registers h on the mux under pattern, which must have a rule.
func (t *policyTable) handle(pattern string, h http.Handler) error {
	if pattern != usersServicePath {
		if _, ok := t.rules[pattern]; !ok {
			return fmt.Errorf("route %q has no entry in the policy table", pattern)
		}
	}
	t.mux.Handle(pattern, h)
	t.registered = append(t.registered, pattern)
	return nil
}

// lookup returns the route r goes to (its mux pattern, or the procedure)
// and its rule, nil when it has none (refused).
func (t *policyTable) lookup(r *http.Request) (string, *rule) {
	// A procedure of UserService (the hot path): the mux sends every clean
	// path under usersServicePath to the Connect handler, whatever the
	// method, so its rule is found without routing the request twice.
	if p := r.URL.Path; r.URL.RawPath == "" && strings.HasPrefix(p, usersServicePath) {
		if rl, ok := t.rules[p]; ok {
			return p, rl
		}
	}
	_, pattern := t.mux.Handler(r)
	if pattern == "" {
		// No route: only the mux's own 404, 405 or redirect will answer,
		// and they reveal nothing a token should guard.
		return "", &noRoute
	}
	if pattern == usersServicePath {
		pattern = r.URL.Path // the procedure
	}
	if rl, ok := t.rules[pattern]; ok {
		return pattern, rl
	}
	return pattern, nil
}

// grant is what the policy allowed a request. The zero grant allows
// nothing, so a handler reached without the guard refuses.
type grant uint8

const (
	grantNone grant = iota
	grantAll        // the token has the rule's scope, or authentication is off
	grantSelf       // only on the caller's own user
)

// deniedError is a valid token without permission: permission_denied.
type deniedError struct{ msg string }

func (e *deniedError) Error() string { return "permission denied: " + e.msg }

// decide applies rl to p; p is nil when authentication is off.
func decide(rl *rule, p *auth.Principal) (grant, error) {
	switch {
	case rl == nil:
		return grantNone, &deniedError{"this call is not in usersd's policy"}
	case rl.public, rl.anyone:
		return grantAll, nil
	case p == nil:
		return grantAll, nil
	case rl.scope != "" && p.Has(rl.scope):
		return grantAll, nil
	case rl.self:
		return grantSelf, nil
	}
	return grantNone, &deniedError{"this call needs the " + rl.scope + " scope"}
}

// mayActOn is the self rule, checked by the service once it knows the user:
// with grantSelf only a user bound to the caller's subject. found is false
// for an id that does not exist, which is refused the same way, so that a
// caller cannot tell someone else's id from an unused one.
func mayActOn(ctx context.Context, owner string, found bool) error {
	switch grantOf(ctx) {
	case grantAll:
		return nil
	case grantSelf:
		if p := auth.FromContext(ctx); p != nil && found && owner == p.Subject {
			return nil
		}
		return &deniedError{"without the needed scope a token may act only on its own user"}
	}
	return &deniedError{"no grant"}
}

// boundSubject is the subject a call is bound to: the caller's under
// grantSelf (a new user is bound to it; a change must find the user bound to
// it), none under grantAll.
func boundSubject(ctx context.Context) (string, error) {
	switch grantOf(ctx) {
	case grantAll:
		return "", nil
	case grantSelf:
		if p := auth.FromContext(ctx); p != nil {
			return p.Subject, nil
		}
	}
	return "", &deniedError{"no grant"}
}

func grantOf(ctx context.Context) grant {
	if a, ok := ctx.Value(accessKey{}).(*access); ok {
		return a.grant
	}
	return grantNone
}
