//go:build !nodb

package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	usersv1 "github.com/acme/usersd/gen/users/v1"
)

// TestAPI runs one table of cases through every client: Connect JSON,
// Connect proto, Connect GET, gRPC, gRPC-Web, grpc-go and REST. Each
// client gets a server over a database of its own: the cases count and
// delete users, which a neighbour's cases must not disturb.
func TestAPI(t *testing.T) {
	t.Parallel()
	for _, name := range clientNames {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ts := setup(t, setupOpts{})
			runCases(t, clients(t, ts)[name], name)
		})
	}
}

func runCases(t *testing.T, c apiClient, tag string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	email := func(local string) string { return local + "+" + tag + "@example.com" }

	created, err := c.create(ctx, &usersv1.CreateUserRequest{Email: "  " + email("Ada") + " ", FullName: " Ada Lovelace\t"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	id, perr := uuid.Parse(created.Id)
	if perr != nil || id.Version() != 7 {
		t.Errorf("create: id %q is not a UUIDv7", created.Id)
	}
	if created.Email != email("Ada") || created.FullName != "Ada Lovelace" {
		t.Errorf("create: stored %q / %q, want them trimmed", created.Email, created.FullName)
	}
	if age := time.Since(created.CreatedAt.AsTime()); age < -time.Minute || age > time.Minute {
		t.Errorf("create: created_at %v is not now", created.CreatedAt.AsTime())
	}

	t.Run("get", func(t *testing.T) {
		got, err := c.get(ctx, created.Id)
		if err != nil {
			t.Fatal(err)
		}
		if got.Id != created.Id || got.Email != created.Email || got.FullName != created.FullName ||
			!got.CreatedAt.AsTime().Equal(created.CreatedAt.AsTime()) {
			t.Errorf("get returned %v, want %v", got, created)
		}
	})

	long := strings.Repeat("a", 250) + "@example.com"
	failures := []struct {
		name  string
		call  func() error
		code  connect.Code
		field string
	}{
		{"get unknown id", func() error { _, err := c.get(ctx, uuid.Must(uuid.NewV7()).String()); return err }, connect.CodeNotFound, ""},
		{"get malformed id", func() error { _, err := c.get(ctx, "not-a-uuid"); return err }, connect.CodeInvalidArgument, "id"},
		{"get non-canonical id", func() error { _, err := c.get(ctx, "{"+created.Id+"}"); return err }, connect.CodeInvalidArgument, "id"},
		{"duplicate email in other case", func() error { return createErr(ctx, c, strings.ToUpper(email("Ada")), "Other Ada") }, connect.CodeAlreadyExists, ""},
		{"empty email", func() error { return createErr(ctx, c, "   ", "Name") }, connect.CodeInvalidArgument, "email"},
		{"too long email", func() error { return createErr(ctx, c, long, "Name") }, connect.CodeInvalidArgument, "email"},
		{"malformed email", func() error { return createErr(ctx, c, "no-at-sign", "Name") }, connect.CodeInvalidArgument, "email"},
		{"email with display name", func() error { return createErr(ctx, c, "Ada <"+email("x")+">", "Name") }, connect.CodeInvalidArgument, "email"},
		{"two emails", func() error { return createErr(ctx, c, email("a")+","+email("b"), "Name") }, connect.CodeInvalidArgument, "email"},
		{"empty name", func() error { return createErr(ctx, c, email("noname"), " \t ") }, connect.CodeInvalidArgument, "full_name"},
		{"too long name", func() error { return createErr(ctx, c, email("longname"), strings.Repeat("é", 201)) }, connect.CodeInvalidArgument, "full_name"},
		{"name with control character", func() error { return createErr(ctx, c, email("ctl"), "Bad\x07Name") }, connect.CodeInvalidArgument, "full_name"},
		{"negative page size", func() error { _, err := c.list(ctx, -1, ""); return err }, connect.CodeInvalidArgument, "page_size"},
		{"malformed page token", func() error { _, err := c.list(ctx, 10, "!!not-a-token!!"); return err }, connect.CodeInvalidArgument, "page_token"},
		{"oversized message", func() error { return createErr(ctx, c, email("big"), strings.Repeat("x", 2<<20)) }, connect.CodeResourceExhausted, ""},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ce *callError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want code %v", err, tc.code)
			}
			if ce.code != tc.code || ce.field != tc.field {
				t.Errorf("got %v, want code %v field %q", ce, tc.code, tc.field)
			}
			if ce.msg == "" {
				t.Error("error has no message")
			}
		})
	}

	t.Run("update", func(t *testing.T) { updateCases(t, ctx, c, tag, email) })
	t.Run("delete", func(t *testing.T) { deleteCases(t, ctx, c, email) })
	t.Run("find by email", func(t *testing.T) {
		found, err := c.byEmail(ctx, strings.ToUpper(created.Email))
		if err != nil {
			t.Fatal(err)
		}
		if len(found) != 1 || found[0].Id != created.Id {
			t.Errorf("by email in other case: %v, want exactly %s", found, created.Id)
		}
		if found, err := c.byEmail(ctx, email("nobody-has-this")); err != nil || len(found) != 0 {
			t.Errorf("unknown email: %v, %v; want no users", found, err)
		}
		_, err = c.byEmail(ctx, "not-an-email")
		wantField(t, "malformed email filter", err, connect.CodeInvalidArgument, "email")
	})

	t.Run("a name of exactly 200 characters is accepted", func(t *testing.T) {
		if err := createErr(ctx, c, email("max"), strings.Repeat("é", 200)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("list across pages", func(t *testing.T) {
		mine := map[string]bool{}
		for i := range 7 {
			u, err := c.create(ctx, &usersv1.CreateUserRequest{Email: email(fmt.Sprint("page", i)), FullName: "Paged"})
			if err != nil {
				t.Fatal(err)
			}
			mine[u.Id] = true
		}
		seen := listAcrossPages(t, ctx, c)
		for id := range mine {
			if !seen[id] {
				t.Errorf("user %s missing from the walk", id)
			}
		}
	})
}

func mask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

// updateCases runs UpdateUser: each field, an empty mask, bad paths, etags,
// a taken email and an unknown id.
func updateCases(t *testing.T, ctx context.Context, c apiClient, tag string, email func(string) string) {
	u, err := c.create(ctx, &usersv1.CreateUserRequest{Email: email("upd"), FullName: "Before"})
	if err != nil {
		t.Fatal(err)
	}
	// The shim says "body" where an RPC says "update_mask": it has no mask.
	maskField := "update_mask"
	if tag == "rest" {
		maskField = "body"
	}

	named, err := c.update(ctx, &usersv1.UpdateUserRequest{User: &usersv1.User{Id: u.Id, FullName: " After "}, UpdateMask: mask("full_name")})
	if err != nil {
		t.Fatalf("update full_name: %v", err)
	}
	if named.FullName != "After" || named.Email != u.Email || named.Etag == u.Etag || named.Etag == "" ||
		!named.CreatedAt.AsTime().Equal(u.CreatedAt.AsTime()) || named.UpdatedAt.AsTime().Before(u.UpdatedAt.AsTime()) {
		t.Errorf("after updating full_name: %v (before %v)", named, u)
	}
	mailed, err := c.update(ctx, &usersv1.UpdateUserRequest{User: &usersv1.User{Id: u.Id, Email: email("UPD2"), FullName: "ignored: not in the mask"}, UpdateMask: mask("email")})
	if err != nil {
		t.Fatalf("update email: %v", err)
	}
	if mailed.Email != email("UPD2") || mailed.FullName != "After" || mailed.Etag == named.Etag {
		t.Errorf("after updating email: %v", mailed)
	}
	got, err := c.get(ctx, u.Id)
	if err != nil || got.Email != mailed.Email || got.FullName != "After" || got.Etag != mailed.Etag {
		t.Errorf("get after the updates: %v, %v; want %v", got, err, mailed)
	}
	both, err := c.update(ctx, &usersv1.UpdateUserRequest{User: &usersv1.User{Id: u.Id, Email: email("upd3"), FullName: "Both"}})
	if err != nil || both.Email != email("upd3") || both.FullName != "Both" {
		t.Errorf("empty mask with both fields set: %v, %v", both, err)
	}

	// Etags: the current one works, an old one changes nothing.
	matched, err := c.update(ctx, &usersv1.UpdateUserRequest{User: &usersv1.User{Id: u.Id, FullName: "Matched", Etag: both.Etag}})
	if err != nil {
		t.Fatalf("update with the current etag: %v", err)
	}
	_, err = c.update(ctx, &usersv1.UpdateUserRequest{User: &usersv1.User{Id: u.Id, FullName: "Stale", Etag: both.Etag}})
	wantField(t, "update with an old etag", err, connect.CodeFailedPrecondition, "")
	_, err = c.update(ctx, &usersv1.UpdateUserRequest{User: &usersv1.User{Id: u.Id, FullName: "Foreign", Etag: "not-an-etag"}})
	wantField(t, "update with a made-up etag", err, connect.CodeFailedPrecondition, "")
	if got, _ := c.get(ctx, u.Id); got == nil || got.FullName != "Matched" || got.Etag != matched.Etag {
		t.Errorf("a refused update changed the user: %v", got)
	}

	other, err := c.create(ctx, &usersv1.CreateUserRequest{Email: email("taken"), FullName: "Other"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.update(ctx, &usersv1.UpdateUserRequest{User: &usersv1.User{Id: u.Id, Email: strings.ToUpper(other.Email)}, UpdateMask: mask("email")})
	wantField(t, "update to another user's email in other case", err, connect.CodeAlreadyExists, "")
	_, err = c.update(ctx, &usersv1.UpdateUserRequest{User: &usersv1.User{Id: u.Id}})
	wantField(t, "empty mask with no field set", err, connect.CodeInvalidArgument, maskField)
	_, err = c.update(ctx, &usersv1.UpdateUserRequest{User: &usersv1.User{Id: u.Id, FullName: "x"}, UpdateMask: mask("created_at")})
	wantField(t, "a path that cannot be updated", err, connect.CodeInvalidArgument, maskField)
	_, err = c.update(ctx, &usersv1.UpdateUserRequest{User: &usersv1.User{Id: u.Id, Email: "no-at-sign"}, UpdateMask: mask("email")})
	wantField(t, "a malformed new email", err, connect.CodeInvalidArgument, "email")
	_, err = c.update(ctx, &usersv1.UpdateUserRequest{User: &usersv1.User{Id: u.Id, FullName: "  "}, UpdateMask: mask("full_name")})
	wantField(t, "an empty new name", err, connect.CodeInvalidArgument, "full_name")
	_, err = c.update(ctx, &usersv1.UpdateUserRequest{User: &usersv1.User{Id: uuid.Must(uuid.NewV7()).String(), FullName: "Ghost"}})
	wantField(t, "update of an unknown id", err, connect.CodeNotFound, "")
}

// deleteCases runs DeleteUser: with a stale etag, with the current one,
// twice, and a read afterwards.
func deleteCases(t *testing.T, ctx context.Context, c apiClient, email func(string) string) {
	u, err := c.create(ctx, &usersv1.CreateUserRequest{Email: email("del"), FullName: "Doomed"})
	if err != nil {
		t.Fatal(err)
	}
	changed, err := c.update(ctx, &usersv1.UpdateUserRequest{User: &usersv1.User{Id: u.Id, FullName: "Changed"}})
	if err != nil {
		t.Fatal(err)
	}
	err = c.remove(ctx, u.Id, u.Etag)
	wantField(t, "delete with an old etag", err, connect.CodeFailedPrecondition, "")
	if _, err := c.get(ctx, u.Id); err != nil {
		t.Errorf("the refused delete removed the user: %v", err)
	}
	if err := c.remove(ctx, u.Id, changed.Etag); err != nil {
		t.Fatalf("delete with the current etag: %v", err)
	}
	_, err = c.get(ctx, u.Id)
	wantField(t, "get after delete", err, connect.CodeNotFound, "")
	err = c.remove(ctx, u.Id, "")
	wantField(t, "delete twice", err, connect.CodeNotFound, "")
	err = c.remove(ctx, "not-a-uuid", "")
	wantField(t, "delete of a malformed id", err, connect.CodeInvalidArgument, "id")
	// The email is free again.
	if _, err := c.create(ctx, &usersv1.CreateUserRequest{Email: email("DEL"), FullName: "Reborn"}); err != nil {
		t.Errorf("create with a deleted user's email: %v", err)
	}
	if found, _ := c.byEmail(ctx, email("del")); len(found) != 1 || found[0].Id == u.Id {
		t.Errorf("by email after delete and re-create: %v", found)
	}
}

func createErr(ctx context.Context, c apiClient, email, name string) error {
	_, err := c.create(ctx, &usersv1.CreateUserRequest{Email: email, FullName: name})
	return err
}

// listAcrossPages walks the whole table in small pages and checks each
// user appears once, newest first, with the last page having no token.
func listAcrossPages(t *testing.T, ctx context.Context, c apiClient) map[string]bool {
	seen := map[string]bool{}
	var prev string
	token := ""
	pages := 0
	for {
		page, err := c.list(ctx, 3, token)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page.Users) > 3 {
			t.Fatalf("page of %d users, asked for 3", len(page.Users))
		}
		for _, u := range page.Users {
			if seen[u.Id] {
				t.Errorf("user %s on two pages", u.Id)
			}
			seen[u.Id] = true
			if prev != "" && u.Id >= prev {
				t.Errorf("not newest first: %s after %s", u.Id, prev)
			}
			prev = u.Id
		}
		if page.NextPageToken == "" {
			break
		}
		token = page.NextPageToken
		if pages > 1000 {
			t.Fatal("walk does not end")
		}
	}
	if pages < 3 {
		t.Errorf("walked %d users on %d pages, want at least 3 pages", len(seen), pages)
	}
	// Default and clamped page sizes.
	for _, size := range []int32{0, 1000000} {
		page, err := c.list(ctx, size, "")
		if err != nil {
			t.Fatalf("page_size %d: %v", size, err)
		}
		if want := min(len(seen), map[int32]int{0: 50, 1000000: 100}[size]); len(page.Users) < want {
			t.Errorf("page_size %d returned %d users, want at least %d", size, len(page.Users), want)
		}
	}
	return seen
}

// TestHealthFollowsDatabase checks gRPC health and /healthz turn
// NOT_SERVING / 503 while PostgreSQL is unreachable, API calls fail with
// unavailable, and all recover once it is back.
func TestHealthFollowsDatabase(t *testing.T) {
	t.Parallel()
	ts := setup(t, setupOpts{proxy: true})
	ctx := t.Context()
	h2 := h2cClient(t)
	api := clients(t, ts)

	check := func(want string) {
		t.Helper()
		if got := grpcHealth(t, h2, ts.URL); got != want {
			t.Errorf("gRPC health = %s, want %s", got, want)
		}
		wantStatus := map[string]int{"SERVING": 200, "NOT_SERVING": 503}[want]
		if got := httpStatus(t, h2, ts.URL+"/healthz"); got != wantStatus {
			t.Errorf("/healthz = %d, want %d", got, wantStatus)
		}
		if got := httpStatus(t, h2, ts.URL+"/livez"); got != 200 {
			t.Errorf("/livez = %d, want 200 whatever the database does", got)
		}
	}
	check("SERVING")

	ts.proxy.Cut()
	check("NOT_SERVING")
	for _, name := range []string{"connect-proto", "grpc", "rest"} {
		start := time.Now()
		_, err := api[name].get(ctx, uuid.Must(uuid.NewV7()).String())
		var ce *callError
		if !errors.As(err, &ce) || ce.code != connect.CodeUnavailable {
			t.Errorf("%s during outage: err = %v, want unavailable", name, err)
		} else if strings.Contains(strings.ToLower(ce.msg), "dial") || strings.Contains(ce.msg, "pgx") {
			t.Errorf("%s: unavailable message leaks driver text: %q", name, ce.msg)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("%s took %v during the outage; want a fast failure", name, d)
		}
	}

	ts.proxy.Restore()
	deadline := time.Now().Add(10 * time.Second)
	for grpcHealth(t, h2, ts.URL) != "SERVING" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	check("SERVING")
	if _, err := api["connect-json"].create(ctx, &usersv1.CreateUserRequest{Email: "back@example.com", FullName: "Back"}); err != nil {
		t.Errorf("create after recovery: %v", err)
	}
}

// TestConcurrentUpdatesOneEtag races twenty PATCHes that carry the same
// etag: exactly one wins, the others change nothing and get
// failed_precondition, on REST, Connect and gRPC alike.
func TestConcurrentUpdatesOneEtag(t *testing.T) {
	t.Parallel()
	ts := setup(t, setupOpts{})
	all := clients(t, ts)
	ctx := t.Context()
	u, err := all["rest"].create(ctx, &usersv1.CreateUserRequest{Email: "race@example.com", FullName: "Racer"})
	if err != nil {
		t.Fatal(err)
	}
	etag := u.Etag
	for _, name := range []string{"rest", "connect-proto", "grpc-go"} {
		c := all[name]
		var mu sync.Mutex
		var winners []*usersv1.User
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				got, err := c.update(ctx, &usersv1.UpdateUserRequest{User: &usersv1.User{Id: u.Id, FullName: fmt.Sprintf("%s %d", name, i), Etag: etag}})
				var ce *callError
				switch {
				case err == nil:
					mu.Lock()
					winners = append(winners, got)
					mu.Unlock()
				case errors.As(err, &ce) && ce.code == connect.CodeFailedPrecondition:
				default:
					t.Errorf("%s: %v, want ok or failed_precondition", name, err)
				}
			})
		}
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("%s: %d updates won with one etag, want exactly 1", name, len(winners))
		}
		stored, err := c.get(ctx, u.Id)
		if err != nil || stored.FullName != winners[0].FullName || stored.Etag != winners[0].Etag {
			t.Errorf("%s: stored %v, %v; want the winner %v", name, stored, err, winners[0])
		}
		etag = stored.Etag
	}
}

// TestDeleteLogsIDNotEmail: the access line of a delete names the user by
// id, on REST and RPC, and no log line holds the email.
func TestDeleteLogsIDNotEmail(t *testing.T) {
	t.Parallel()
	ts := setup(t, setupOpts{})
	all := clients(t, ts)
	for _, name := range []string{"rest", "connect-proto"} {
		c := all[name]
		email := "erase-me-" + name + "@example.com"
		u, err := c.create(t.Context(), &usersv1.CreateUserRequest{Email: email, FullName: "Erased"})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.remove(t.Context(), u.Id, ""); err != nil {
			t.Fatal(err)
		}
		found := false
		for line := range strings.Lines(ts.Logs.String()) {
			if strings.Contains(line, email) {
				t.Errorf("%s: a log line holds the email: %s", name, line)
			}
			if strings.Contains(line, `"msg":"request"`) && strings.Contains(line, "Delete") || strings.Contains(line, `"route":"DELETE /users/{id}"`) {
				if strings.Contains(line, `"user_id":"`+u.Id+`"`) {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("%s: no access line of the delete carries user_id %s:\n%s", name, u.Id, ts.Logs.String())
		}
	}
}
