package server_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	usersv1 "github.com/acme/usersd/gen/users/v1"
)

// TestAPI runs one table of cases through every client: Connect JSON,
// Connect proto, Connect GET, gRPC, gRPC-Web, grpc-go and REST.
func TestAPI(t *testing.T) {
	t.Parallel()
	ts := setup(t, setupOpts{})
	all := clients(t, ts)
	for _, name := range slices.Sorted(maps.Keys(all)) {
		c := all[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// Each client works on its own emails; they share the database.
			runCases(t, c, name)
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

	ts.proxy.cut()
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

	ts.proxy.restore()
	deadline := time.Now().Add(10 * time.Second)
	for grpcHealth(t, h2, ts.URL) != "SERVING" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	check("SERVING")
	if _, err := api["connect-json"].create(ctx, &usersv1.CreateUserRequest{Email: "back@example.com", FullName: "Back"}); err != nil {
		t.Errorf("create after recovery: %v", err)
	}
}
