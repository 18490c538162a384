package server

import (
	"fmt"
	"net/http"
	"strings"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/users"
)

// procedureRules is the policy keyed by procedure: users.Policy, whose
// rows are the methods of UserService, under their full procedure names.
// The REST routes look their rule up here by the procedure they serve, so
// an RPC and its REST route cannot disagree.
func procedureRules() map[string]*users.Rule {
	svc := usersv1.File_users_v1_users_proto.Services().ByName("UserService")
	rules := make(map[string]*users.Rule, len(users.Policy))
	for method, rl := range users.Policy {
		rules["/"+string(svc.FullName())+"/"+method] = &rl
	}
	return rules
}

// Rules of the routes that are not operations of the users service.
var (
	public        = &users.Rule{Public: true}        // health, reflection, metrics, the page, the OpenAPI document
	authenticated = &users.Rule{Authenticated: true} // any valid token: methods a REST path does not take (405)
)

// route is what the guard knows of a mux pattern before the request
// reaches it.
type route struct {
	rule *users.Rule // nil: a Connect service whose rules are per procedure
	rpc  bool        // a Connect, gRPC and gRPC-Web service
}

// routeTable is the mux together with the rule of every route on it, so
// that the guard finds a request's rule before the mux routes it. Every
// way of registering a route names its rule (or the procedure whose rule
// applies): a route without one cannot be registered, and a procedure
// without one is refused.
type routeTable struct {
	mux        *http.ServeMux
	procedures map[string]*users.Rule // by procedure; shared and never modified
	patterns   map[string]*route
	services   []string // path prefixes of the Connect services
	err        error    // the first registration that failed
}

func newRouteTable() *routeTable {
	return &routeTable{mux: http.NewServeMux(), procedures: procedureRules(), patterns: make(map[string]*route)}
}

// service registers a Connect service handler under its path. A public
// service (health, reflection) is open to all; any other is ruled per
// procedure.
func (t *routeTable) service(path string, h http.Handler, open bool) {
	rt := &route{rpc: true}
	if open {
		rt.rule = public
	}
	t.services = append(t.services, path)
	t.add(path, h, rt)
}

// rest registers a REST route that serves procedure, under its rule.
func (t *routeTable) rest(pattern, procedure string, h http.Handler) {
	rl, ok := t.procedures[procedure]
	if !ok && t.err == nil {
		t.err = fmt.Errorf("REST route %q serves %q, which has no rule in the policy", pattern, procedure)
		return
	}
	t.add(pattern, h, &route{rule: rl})
}

// plain registers a route that is no operation of the users service.
func (t *routeTable) plain(pattern string, rl *users.Rule, h http.Handler) {
	t.add(pattern, h, &route{rule: rl})
}

func (t *routeTable) add(pattern string, h http.Handler, rt *route) {
	if t.err != nil {
		return
	}
	if _, dup := t.patterns[pattern]; dup {
		t.err = fmt.Errorf("route %q registered twice", pattern)
		return
	}
	t.patterns[pattern] = rt
	t.mux.Handle(pattern, h)
}

// lookup returns r's rule, nil when there is none (the guard refuses),
// whether r is for a Connect service, and the endpoint the access log and
// metrics name it by: the route's pattern, or for an RPC its procedure.
func (t *routeTable) lookup(r *http.Request) (rl *users.Rule, rpc bool, endpoint string) {
	// A procedure with a rule (the hot path): the mux sends every clean
	// path under a service's prefix to its handler, whatever the method,
	// so the rule is found without routing the request twice.
	if p := r.URL.Path; r.URL.RawPath == "" {
		if rl, ok := t.procedures[p]; ok {
			return rl, true, p
		}
	}
	_, pattern := t.mux.Handler(r)
	rt, ok := t.patterns[pattern]
	switch {
	case !ok:
		// No route: only the mux's own 404, 405 or redirect will answer,
		// and they reveal nothing a token should guard.
		return public, false, ""
	case !rt.rpc:
		return rt.rule, false, pattern
	case rt.rule != nil:
		return rt.rule, true, r.URL.Path
	}
	return t.procedures[r.URL.Path], true, r.URL.Path
}

// isRPC reports whether r is for one of the Connect services.
func (t *routeTable) isRPC(r *http.Request) bool {
	for _, prefix := range t.services {
		if strings.HasPrefix(r.URL.Path, prefix) {
			return true
		}
	}
	return false
}
