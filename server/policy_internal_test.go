package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/acme/usersd/auth"
	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/gen/users/v1/usersv1connect"
	"github.com/acme/usersd/internal/devissuer"
	"github.com/acme/usersd/users"
	"github.com/acme/usersd/users/userstest"
)

// TestPolicyCoversEveryRoute keeps the policy and the routes in step:
// every procedure of the generated service descriptor has a rule, nothing
// in the policy is a method the service lacks, every registered route
// resolves to a rule, and a REST route naming a procedure without a rule
// cannot be registered.
func TestPolicyCoversEveryRoute(t *testing.T) {
	t.Parallel()
	svc := usersv1.File_users_v1_users_proto.Services().ByName("UserService")
	var methods []string
	for i := range svc.Methods().Len() {
		m := string(svc.Methods().Get(i).Name())
		methods = append(methods, m)
		if _, ok := users.Policy[m]; !ok {
			t.Errorf("method %s has no rule in users.Policy", m)
		}
	}
	for m := range users.Policy {
		if !slices.Contains(methods, m) {
			t.Errorf("users.Policy has a rule for %s, which UserService does not have", m)
		}
	}

	routes := testRoutes(t, Options{WebDir: t.TempDir(), Mounts: map[string]http.Handler{"GET /metrics": http.NotFoundHandler()}})
	if routes.err != nil {
		t.Fatalf("the fullest set of routes does not register: %v", routes.err)
	}
	for pattern, rt := range routes.patterns {
		if rt.rpc && rt.rule == nil {
			continue // ruled per procedure: checked below
		}
		if rt.rule == nil || *rt.rule == (users.Rule{}) {
			t.Errorf("route %q has no rule", pattern)
		}
	}
	for _, m := range methods {
		proc := "/" + string(svc.FullName()) + "/" + m
		r := httptest.NewRequest(http.MethodPost, proc, nil)
		if rl, rpc, endpoint := routes.lookup(r); rl == nil || !rpc || endpoint != proc {
			t.Errorf("lookup(%s) = %v, %v, %q; want its rule, as an RPC", proc, rl, rpc, endpoint)
		}
	}
	// The REST routes serve the procedures' rules.
	for pattern, proc := range map[string]string{
		"POST /users":        usersv1connect.UserServiceCreateUserProcedure,
		"GET /users":         usersv1connect.UserServiceListUsersProcedure,
		"GET /users/{id}":    usersv1connect.UserServiceGetUserProcedure,
		"PATCH /users/{id}":  usersv1connect.UserServiceUpdateUserProcedure,
		"DELETE /users/{id}": usersv1connect.UserServiceDeleteUserProcedure,
	} {
		if rt := routes.patterns[pattern]; rt == nil || rt.rule != routes.procedures[proc] {
			t.Errorf("REST route %q does not carry the rule of %s", pattern, proc)
		}
	}
	// A procedure of the users service without a rule is refused.
	unknown := httptest.NewRequest(http.MethodPost, "/"+usersv1connect.UserServiceName+"/NoSuchMethod", nil)
	if rl, rpc, _ := routes.lookup(unknown); rl != nil || !rpc {
		t.Errorf("a procedure without a rule looks up as %v (rpc %v), want no rule", rl, rpc)
	}

	bad := newRouteTable()
	bad.rest("GET /secret", "/users.v1.UserService/NoSuchMethod", http.NotFoundHandler())
	if bad.err == nil || !strings.Contains(bad.err.Error(), "GET /secret") {
		t.Errorf("a REST route for a procedure without a rule registered: err = %v", bad.err)
	}
}

func testRoutes(t *testing.T, opts Options) *routeTable {
	t.Helper()
	ins, err := newInstruments(opts)
	if err != nil {
		t.Fatal(err)
	}
	svc := users.New(userstest.NewMemory(), users.Options{})
	return newRoutes(svc, NewHealth(func(context.Context) error { return nil }), ins, time.Second, nil, opts, slog.New(slog.DiscardHandler))
}

// TestAuthorizesWithoutAccessLog runs the guard and the routes with no
// access middleware around them: the principal and the grant travel in
// context values of their own, so authorization works the same.
func TestAuthorizesWithoutAccessLog(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	iss := devissuer.StartTest(t, "usersd-test", "RS256")
	v, err := auth.NewVerifier(auth.Config{Issuer: iss.URL(), Audience: "usersd-test", Logger: log, RetryMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	for deadline := time.Now().Add(10 * time.Second); !v.Ready(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the verifier did not load the issuer's keys")
		}
	}
	routes := testRoutes(t, Options{})
	var principal *users.Principal
	routes.mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) { principal = auth.FromContext(r.Context()) })
	routes.patterns["GET /whoami"] = &route{rule: &users.Rule{Scope: users.ScopeRead}}
	g := &guard{routes: routes, verifier: v, log: log, rpcErrs: connect.NewErrorWriter()}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)

	call := func(method, path, token, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}
	self := iss.Token("alice") // no scopes: self sign-up only
	admin := iss.Token("admin", users.ScopeRead, users.ScopeWrite)

	code, alice := call("POST", "/users", self, `{"email":"alice@example.com","full_name":"Alice"}`)
	if code != http.StatusCreated {
		t.Fatalf("self sign-up: %d %v", code, alice)
	}
	if code, _ := call("GET", "/users/"+alice["id"].(string), self, ""); code != http.StatusOK {
		t.Errorf("reading one's own user: %d, want 200", code)
	}
	code, bob := call("POST", "/users", admin, `{"email":"bob@example.com","full_name":"Bob"}`)
	if code != http.StatusCreated {
		t.Fatalf("create with users:write: %d %v", code, bob)
	}
	if code, body := call("GET", "/users/"+bob["id"].(string), self, ""); code != http.StatusForbidden {
		t.Errorf("reading someone else's user under a self grant: %d %v, want 403", code, body)
	}
	if code, _ := call("GET", "/users", self, ""); code != http.StatusForbidden {
		t.Errorf("listing without users:read: %d, want 403", code)
	}
	if code, _ := call("GET", "/users", "", ""); code != http.StatusUnauthorized {
		t.Errorf("listing without a token: %d, want 401", code)
	}
	if code, body := call("GET", "/users", admin, ""); code != http.StatusOK || len(body["users"].([]any)) != 2 {
		t.Errorf("listing with users:read: %d %v", code, body)
	}
	if code, _ := call("POST", usersv1connect.UserServiceGetUserProcedure, self, `{"id":"`+bob["id"].(string)+`"}`); code != http.StatusForbidden {
		t.Errorf("Connect GetUser of someone else's user under a self grant: %d, want 403", code)
	}
	if code, _ := call("GET", "/whoami", admin, ""); code != http.StatusOK || principal == nil || principal.Subject != "admin" {
		t.Errorf("the principal in the handler's context: %d, %+v", code, principal)
	}
}
