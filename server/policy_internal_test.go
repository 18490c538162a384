package server

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/acme/usersd/auth"
	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/gen/users/v1/usersv1connect"
)

// TestPolicyCoversEveryRoute keeps the policy table and the routes in
// step: every procedure of the generated service descriptor has an entry,
// every route registers only with an entry (a route without one fails
// New), and every entry is a procedure or a route that exists.
func TestPolicyCoversEveryRoute(t *testing.T) {
	t.Parallel()
	svc := usersv1.File_users_v1_users_proto.Services().ByName("UserService")
	var procedures []string
	for i := range svc.Methods().Len() {
		proc := "/" + string(svc.FullName()) + "/" + string(svc.Methods().Get(i).Name())
		procedures = append(procedures, proc)
		if _, ok := policy[proc]; !ok {
			t.Errorf("procedure %s has no entry in the policy table", proc)
		}
	}

	tel, err := newTelemetry(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ping := func(context.Context) error { return nil }
	full := Options{WebDir: t.TempDir(), Mounts: map[string]http.Handler{"GET /metrics": http.NotFoundHandler()}}
	routes, err := newRoutes(&service{}, NewHealth(ping), tel, 0, nil, full)
	if err != nil {
		t.Fatalf("the fullest set of routes does not register: %v", err)
	}
	for key := range policy {
		if !slices.Contains(procedures, key) && !slices.Contains(routes.registered, key) {
			t.Errorf("policy entry %q is neither a procedure nor a route", key)
		}
	}

	unlisted := Options{Mounts: map[string]http.Handler{"GET /secret": http.NotFoundHandler()}}
	if _, err := newRoutes(&service{}, NewHealth(ping), tel, 0, nil, unlisted); err == nil || !strings.Contains(err.Error(), "GET /secret") {
		t.Errorf("a route without a policy entry registered: err = %v", err)
	}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	read := &auth.Principal{Subject: "r", Scopes: []string{ScopeRead}}
	none := &auth.Principal{Subject: "n"}
	get := policy[usersv1connect.UserServiceGetUserProcedure]
	list := policy["GET /users"]
	for _, tc := range []struct {
		name string
		rl   *rule
		p    *auth.Principal
		want grant
	}{
		{"scope", &get, read, grantAll},
		{"self without scope", &get, none, grantSelf},
		{"scope missing, no self rule", &list, none, grantNone},
		{"not in the table", nil, read, grantNone},
		{"not in the table, authentication off", nil, nil, grantNone},
		{"authentication off", &list, nil, grantAll},
	} {
		got, err := decide(tc.rl, tc.p)
		if got != tc.want || (err != nil) != (tc.want == grantNone) {
			t.Errorf("%s: decide = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}
