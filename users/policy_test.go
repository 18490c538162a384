package users_test

import (
	"context"
	"errors"
	"testing"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/users"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	read := &users.Principal{Subject: "r", Scopes: []string{users.ScopeRead}}
	none := &users.Principal{Subject: "n"}
	get, list := users.Policy["GetUser"], users.Policy["ListUsers"]
	for _, tc := range []struct {
		name    string
		rl      *users.Rule
		p       *users.Principal
		allowed bool
	}{
		{"scope", &get, read, true},
		{"self without scope", &get, none, true},
		{"scope missing, no self rule", &list, none, false},
		{"not in the table", nil, read, false},
		{"not in the table, authentication off", nil, nil, false},
		{"authentication off", &list, nil, true},
	} {
		_, err := users.Decide(tc.rl, tc.p)
		if (err == nil) != tc.allowed {
			t.Errorf("%s: err = %v, want allowed %v", tc.name, err, tc.allowed)
		}
	}
}

// TestSelfGrant: under a self grant an operation touches only the
// caller's own user, and an unknown id is refused like someone else's.
func TestSelfGrant(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t)
	other := create(t, svc, "other@example.com")
	get := users.Policy["GetUser"]
	g, err := users.Decide(&get, &users.Principal{Subject: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	alice := users.WithGrant(context.Background(), g)
	own, err := svc.CreateUser(alice, &usersv1.CreateUserRequest{Email: "alice@example.com", FullName: "Alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.GetUser(alice, &usersv1.GetUserRequest{Id: own.User.Id}); err != nil {
		t.Errorf("own user: %v", err)
	}
	for name, id := range map[string]string{"someone else's": other.Id, "unknown": "0190c3b6-6f2e-7c4a-9d3e-2b5f8a1c0d4e"} {
		if _, err := svc.GetUser(alice, &usersv1.GetUserRequest{Id: id}); !errors.As(err, new(*users.DeniedError)) {
			t.Errorf("get %s id: %v, want denied", name, err)
		}
		if _, err := svc.DeleteUser(alice, &usersv1.DeleteUserRequest{Id: id}); !errors.As(err, new(*users.DeniedError)) {
			t.Errorf("delete %s id: %v, want denied", name, err)
		}
	}
	if _, err := svc.ListUsers(alice, &usersv1.ListUsersRequest{}); !errors.As(err, new(*users.DeniedError)) {
		t.Errorf("list under a self grant: %v, want denied", err)
	}
	if _, err := svc.CreateUser(alice, &usersv1.CreateUserRequest{Email: "alice2@example.com", FullName: "Again"}); !errors.Is(err, users.ErrSubjectTaken) {
		t.Errorf("second sign-up: %v, want ErrSubjectTaken", err)
	}
	// Without any grant (a handler reached without the guard) nothing works.
	if _, err := svc.GetUser(context.Background(), &usersv1.GetUserRequest{Id: own.User.Id}); !errors.As(err, new(*users.DeniedError)) {
		t.Errorf("get without a grant: %v, want denied", err)
	}
	if _, err := svc.CreateUser(context.Background(), &usersv1.CreateUserRequest{Email: "x@example.com", FullName: "X"}); !errors.As(err, new(*users.DeniedError)) {
		t.Errorf("create without a grant: %v, want denied", err)
	}
}
