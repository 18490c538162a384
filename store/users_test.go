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
	return store.NewUsers(db, nil), db
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
	users := store.NewUsers(db, func(ctx context.Context, tx pgx.Tx, u store.User) error { return boom })
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
