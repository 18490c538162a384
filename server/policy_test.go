//go:build !nodb

package server_test

import (
	"maps"
	"slices"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/users"
)

// TestPolicyEveryClient walks every row of the policy table, allowed and
// refused, through all seven clients.
func TestPolicyEveryClient(t *testing.T) {
	t.Parallel()
	ts := setup(t, setupOpts{})
	for _, name := range slices.Sorted(maps.Keys(clients(t, ts))) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			as := func(sub string, scopes ...string) apiClient {
				return clientsAs(t, ts, ts.Issuer.Token(sub+"-"+name, scopes...))[name]
			}
			admin := clientsAs(t, ts, ts.Admin)[name]
			reader := as("reader", users.ScopeRead)
			writer := as("writer", users.ScopeWrite)
			nobody := as("nobody") // a valid token without scopes
			anon := clientsAs(t, ts, "")[name]
			create := func(c apiClient, local string) (*usersv1.User, error) {
				return c.create(ctx, &usersv1.CreateUserRequest{Email: local + "+" + name + "@example.com", FullName: local})
			}

			// CreateUser: users:write creates any user, unbound.
			other, err := create(admin, "other")
			if err != nil {
				t.Fatalf("admin create: %v", err)
			}
			w, err := create(writer, "written")
			wantOK(t, "create with users:write", err)

			// GetUser: users:read reads anyone; without it only one's own.
			_, err = reader.get(ctx, other.Id)
			wantOK(t, "get with users:read", err)
			if w != nil {
				_, err = writer.get(ctx, w.Id)
				wantCode(t, "get of a user created (not owned) without users:read", err, connect.CodePermissionDenied)
			}
			_, err = nobody.get(ctx, other.Id)
			wantCode(t, "get of someone else's user", err, connect.CodePermissionDenied)
			_, err = nobody.get(ctx, uuid.Must(uuid.NewV7()).String())
			wantCode(t, "get of an unknown id without users:read", err, connect.CodePermissionDenied)
			_, err = admin.get(ctx, uuid.Must(uuid.NewV7()).String())
			wantCode(t, "get of an unknown id with users:read", err, connect.CodeNotFound)

			// Self sign-up: without users:write, one user bound to the subject.
			own, err := create(nobody, "self")
			if err != nil {
				t.Fatalf("self sign-up: %v", err)
			}
			got, err := nobody.get(ctx, own.Id)
			wantOK(t, "get of one's own user", err)
			if got != nil && got.Email != own.Email {
				t.Errorf("own user = %v, want %v", got, own)
			}
			_, err = create(nobody, "self-again")
			wantCode(t, "a second self sign-up", err, connect.CodeAlreadyExists)
			_, err = create(reader, "reader-self")
			wantOK(t, "self sign-up with users:read only", err)
			_, err = create(reader, "reader-self-again")
			wantCode(t, "a second self sign-up with users:read only", err, connect.CodeAlreadyExists)
			_, err = admin.get(ctx, own.Id)
			wantOK(t, "admin get of a self-signed-up user", err)

			// UpdateUser and DeleteUser: users:write, or one's own user.
			rename := func(c apiClient, id, name string) error {
				_, err := c.update(ctx, &usersv1.UpdateUserRequest{User: &usersv1.User{Id: id, FullName: name}})
				return err
			}
			wantOK(t, "update of one's own user without scopes", rename(nobody, own.Id, "Own"))
			wantCode(t, "update of someone else's user without users:write", rename(nobody, other.Id, "Mine now"), connect.CodePermissionDenied)
			wantCode(t, "update of an unknown id without users:write", rename(nobody, uuid.Must(uuid.NewV7()).String(), "Ghost"), connect.CodePermissionDenied)
			wantCode(t, "update with users:read only", rename(reader, other.Id, "Read only"), connect.CodePermissionDenied)
			wantOK(t, "update with users:write", rename(writer, other.Id, "Written"))
			wantCode(t, "update without a token", rename(anon, other.Id, "Anon"), connect.CodeUnauthenticated)
			wantCode(t, "delete of someone else's user without users:write", nobody.remove(ctx, other.Id, ""), connect.CodePermissionDenied)
			wantCode(t, "delete without a token", anon.remove(ctx, other.Id, ""), connect.CodeUnauthenticated)
			if w != nil {
				wantCode(t, "delete with users:read only", reader.remove(ctx, w.Id, ""), connect.CodePermissionDenied)
				wantOK(t, "delete with users:write", writer.remove(ctx, w.Id, ""))
			}
			selfDel, err := create(as("leaver"), "leaver")
			if err != nil {
				t.Fatalf("self sign-up: %v", err)
			}
			wantOK(t, "delete of one's own user without scopes", as("leaver").remove(ctx, selfDel.Id, ""))
			_, err = as("leaver").get(ctx, selfDel.Id)
			wantCode(t, "get of one's own deleted user without users:read", err, connect.CodePermissionDenied)

			// The email filter: users:read.
			_, err = reader.byEmail(ctx, own.Email)
			wantOK(t, "find by email with users:read", err)
			_, err = nobody.byEmail(ctx, own.Email)
			wantCode(t, "find by email without users:read, even one's own", err, connect.CodePermissionDenied)

			// ListUsers: users:read only.
			_, err = reader.list(ctx, 1, "")
			wantOK(t, "list with users:read", err)
			_, err = writer.list(ctx, 1, "")
			wantCode(t, "list with users:write only", err, connect.CodePermissionDenied)
			_, err = nobody.list(ctx, 1, "")
			wantCode(t, "list without scopes", err, connect.CodePermissionDenied)

			// No token: unauthenticated before anything else, even bad input.
			_, err = create(anon, "anon")
			wantCode(t, "create without a token", err, connect.CodeUnauthenticated)
			_, err = anon.get(ctx, other.Id)
			wantCode(t, "get without a token", err, connect.CodeUnauthenticated)
			_, err = anon.get(ctx, "not-a-uuid")
			wantCode(t, "get of a malformed id without a token", err, connect.CodeUnauthenticated)
			_, err = anon.list(ctx, 1, "")
			wantCode(t, "list without a token", err, connect.CodeUnauthenticated)
		})
	}
}
