package store_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func setup(t *testing.T) (*store.Users, *store.DB) {
	t.Helper()
	db := dbtest.New(t, store.Config{MaxConns: 8, AcquireTimeout: 5 * time.Second})
	return store.NewUsers(db, store.Hooks{}), db
}

func TestCreateGet(t *testing.T) {
	t.Parallel()
	users, _ := setup(t)
	ctx := t.Context()

	created, err := users.Create(ctx, store.NewUser{Email: "Ada@Example.com", FullName: "Ada Lovelace"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.ID.Version() != 7 {
		t.Errorf("id %s is UUID version %d, want 7", created.ID, created.ID.Version())
	}
	if created.CreatedAt.IsZero() {
		t.Error("created_at not set")
	}
	got, err := users.Get(ctx, created.ID)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.ID != created.ID || got.Email != "Ada@Example.com" || got.FullName != "Ada Lovelace" || !got.CreatedAt.Equal(created.CreatedAt) {
		t.Errorf("get returned %+v, want %+v", got, created)
	}

	if _, err := users.Get(ctx, uuid.Must(uuid.NewV7())); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get unknown id: err = %v, want ErrNotFound", err)
	}
}

func TestIDsSortByCreation(t *testing.T) {
	t.Parallel()
	users, _ := setup(t)
	var ids []uuid.UUID
	for i := range 20 {
		u, err := users.Create(t.Context(), store.NewUser{Email: uuid.NewString() + "@example.com", FullName: "User"})
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		ids = append(ids, u.ID)
	}
	if !slices.IsSortedFunc(ids, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) }) {
		t.Errorf("ids do not sort in creation order: %v", ids)
	}
}

func TestEmailTakenIgnoringCase(t *testing.T) {
	t.Parallel()
	users, db := setup(t)
	ctx := t.Context()
	if _, err := users.Create(ctx, store.NewUser{Email: "grace@example.com", FullName: "Grace"}); err != nil {
		t.Fatal(err)
	}
	_, err := users.Create(ctx, store.NewUser{Email: "GRACE@Example.COM", FullName: "Grace Again"})
	if !errors.Is(err, store.ErrEmailTaken) {
		t.Fatalf("second create: err = %v, want ErrEmailTaken", err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil || n != 1 {
		t.Errorf("users = %d (err %v), want 1", n, err)
	}
}

func TestCreateHookRollsBack(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t, store.Config{MaxConns: 4})
	boom := errors.New("boom")
	users := store.NewUsers(db, store.Hooks{OnCreate: func(ctx context.Context, tx pgx.Tx, users []store.User) error { return boom }})
	if _, err := users.Create(t.Context(), store.NewUser{Email: "hook@example.com", FullName: "Hook"}); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the hook's error", err)
	}
	var n int
	if err := db.Pool.QueryRow(t.Context(), "SELECT count(*) FROM users").Scan(&n); err != nil || n != 0 {
		t.Errorf("users = %d (err %v), want 0 after a failed hook", n, err)
	}
}

func TestListWalksAllPages(t *testing.T) {
	t.Parallel()
	users, _ := setup(t)
	ctx := t.Context()
	want := make(map[uuid.UUID]bool)
	for range 53 {
		u, err := users.Create(ctx, store.NewUser{Email: uuid.NewString() + "@example.com", FullName: "Listed"})
		if err != nil {
			t.Fatal(err)
		}
		want[u.ID] = true
	}

	// Keep inserting while the walk runs: new rows are newer than the
	// cursor, so they must neither appear nor shift the pages.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				if _, err := users.Create(ctx, store.NewUser{Email: uuid.NewString() + "@example.com", FullName: "Concurrent"}); err != nil {
					t.Errorf("concurrent create: %v", err)
					return
				}
			}
		}
	})

	seen := make(map[uuid.UUID]bool)
	var before uuid.UUID
	var prev []byte
	pages := 0
	for {
		page, more, err := users.List(ctx, before, 10)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, u := range page {
			if seen[u.ID] {
				t.Errorf("user %s seen twice", u.ID)
			}
			seen[u.ID] = true
			if prev != nil && slices.Compare(u.ID[:], prev) >= 0 {
				t.Errorf("page not newest first at %s", u.ID)
			}
			prev = u.ID[:]
		}
		if before == uuid.Nil {
			// The first page may hold rows inserted concurrently; count only
			// the walk below them from here on.
			for id := range seen {
				want[id] = true
			}
		}
		if !more {
			break
		}
		before = page[len(page)-1].ID
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()

	for id := range want {
		if !seen[id] {
			t.Errorf("user %s missing from the walk", id)
		}
	}
	if pages < 6 {
		t.Errorf("walked %d pages, want at least 6 for 53 users at 10 a page", pages)
	}
}

func TestUpdateAndDeleteGuards(t *testing.T) {
	t.Parallel()
	users, _ := setup(t)
	ctx := t.Context()
	str := func(s string) *string { return &s }
	u, err := users.Create(ctx, store.NewUser{Email: "ada@example.com", FullName: "Ada", Subject: "sub-ada"})
	if err != nil {
		t.Fatal(err)
	}
	if u.Version != 1 || !u.UpdatedAt.Equal(u.CreatedAt) {
		t.Errorf("new user: version %d, updated_at %v (created %v)", u.Version, u.UpdatedAt, u.CreatedAt)
	}
	other, err := users.Create(ctx, store.NewUser{Email: "grace@example.com", FullName: "Grace"})
	if err != nil {
		t.Fatal(err)
	}

	// Changing one's own email's case is no conflict with oneself.
	v2, err := users.Update(ctx, u.ID, store.Patch{Email: str("ADA@example.com")}, store.Guard{Version: 1, Subject: "sub-ada"})
	if err != nil || v2.Email != "ADA@example.com" || v2.FullName != "Ada" || v2.Version != 2 || !v2.UpdatedAt.After(v2.CreatedAt) {
		t.Fatalf("update: %+v, %v", v2, err)
	}
	for name, tc := range map[string]struct {
		id    uuid.UUID
		patch store.Patch
		guard store.Guard
		want  error
	}{
		"stale version":   {u.ID, store.Patch{FullName: str("x")}, store.Guard{Version: 1}, store.ErrStale},
		"someone else's":  {u.ID, store.Patch{FullName: str("x")}, store.Guard{Subject: "sub-mallory"}, store.ErrNotOwner},
		"unbound user":    {other.ID, store.Patch{FullName: str("x")}, store.Guard{Subject: "sub-ada"}, store.ErrNotOwner},
		"unknown id":      {uuid.Must(uuid.NewV7()), store.Patch{FullName: str("x")}, store.Guard{}, store.ErrNotFound},
		"email taken":     {u.ID, store.Patch{Email: str("GRACE@example.com")}, store.Guard{}, store.ErrEmailTaken},
		"owner and stale": {u.ID, store.Patch{FullName: str("x")}, store.Guard{Version: 7, Subject: "sub-ada"}, store.ErrStale},
	} {
		if _, err := users.Update(ctx, tc.id, tc.patch, tc.guard); !errors.Is(err, tc.want) {
			t.Errorf("update, %s: err = %v, want %v", name, err, tc.want)
		}
		if tc.want == store.ErrEmailTaken {
			continue // an unguarded delete would succeed
		}
		if err := users.Delete(ctx, tc.id, tc.guard); !errors.Is(err, tc.want) {
			t.Errorf("delete, %s: err = %v, want %v", name, err, tc.want)
		}
	}
	if got, err := users.Get(ctx, u.ID); err != nil || got.Version != 2 || got.FullName != "Ada" {
		t.Errorf("refused changes changed the user: %+v, %v", got, err)
	}

	found, err := users.FindByEmail(ctx, "ada@EXAMPLE.com")
	if err != nil || found.ID != u.ID {
		t.Errorf("find by email in other case: %+v, %v", found, err)
	}
	if _, err := users.FindByEmail(ctx, "nobody@example.com"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("find unknown email: %v", err)
	}

	if err := users.Delete(ctx, u.ID, store.Guard{Version: 2, Subject: "sub-ada"}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := users.Get(ctx, u.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
	// The subject may sign up again.
	if _, err := users.Create(ctx, store.NewUser{Email: "ada2@example.com", FullName: "Ada", Subject: "sub-ada"}); err != nil {
		t.Errorf("sign-up after delete: %v", err)
	}
}
