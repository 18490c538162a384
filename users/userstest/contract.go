package userstest

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/acme/usersd/users"
)

// TestStorage holds a users.Storage to the contract the domain relies on.
// newStorage returns an empty storage of its own for each subtest.
// store/ runs it against PostgreSQL, this package against Memory, so the
// fake cannot drift from the real thing.
func TestStorage(t *testing.T, newStorage func(t *testing.T) users.Storage) {
	for _, c := range []struct {
		name string
		test func(*testing.T, users.Storage)
	}{
		{"create and get", testCreateGet},
		{"ids sort by creation", testIDsSortByCreation},
		{"email taken ignoring case", testEmailTaken},
		{"list walks all pages", testListWalksAllPages},
		{"update and delete guards", testGuards},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.test(t, newStorage(t))
		})
	}
}

func testCreateGet(t *testing.T, s users.Storage) {
	ctx := t.Context()
	created, err := s.Create(ctx, users.NewUser{Email: "Ada@Example.com", FullName: "Ada Lovelace"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.ID.Version() != 7 {
		t.Errorf("id %s is UUID version %d, want 7", created.ID, created.ID.Version())
	}
	if created.CreatedAt.IsZero() || created.Version != 1 || !created.UpdatedAt.Equal(created.CreatedAt) {
		t.Errorf("new user: created_at %v, updated_at %v, version %d", created.CreatedAt, created.UpdatedAt, created.Version)
	}
	got, err := s.Get(ctx, created.ID)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.ID != created.ID || got.Email != "Ada@Example.com" || got.FullName != "Ada Lovelace" || !got.CreatedAt.Equal(created.CreatedAt) || got.Version != 1 {
		t.Errorf("get returned %+v, want %+v", got, created)
	}
	if _, err := s.Get(ctx, uuid.Must(uuid.NewV7())); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("get unknown id: err = %v, want ErrNotFound", err)
	}
}

func testIDsSortByCreation(t *testing.T, s users.Storage) {
	var ids []uuid.UUID
	for i := range 20 {
		u, err := s.Create(t.Context(), users.NewUser{Email: uuid.NewString() + "@example.com", FullName: "User"})
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		ids = append(ids, u.ID)
	}
	if !slices.IsSortedFunc(ids, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) }) {
		t.Errorf("ids do not sort in creation order: %v", ids)
	}
}

func testEmailTaken(t *testing.T, s users.Storage) {
	ctx := t.Context()
	first, err := s.Create(ctx, users.NewUser{Email: "grace@example.com", FullName: "Grace"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, users.NewUser{Email: "GRACE@Example.COM", FullName: "Grace Again"}); !errors.Is(err, users.ErrEmailTaken) {
		t.Fatalf("second create: err = %v, want ErrEmailTaken", err)
	}
	if _, err := s.Create(ctx, users.NewUser{Email: "signup@example.com", FullName: "Once", Subject: "sub-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, users.NewUser{Email: "signup2@example.com", FullName: "Twice", Subject: "sub-1"}); !errors.Is(err, users.ErrSubjectTaken) {
		t.Fatalf("second sign-up: err = %v, want ErrSubjectTaken", err)
	}
	page, more, err := s.List(ctx, uuid.Nil, 10)
	if err != nil || more || len(page) != 2 || page[1].ID != first.ID {
		t.Errorf("after the refused creates: %d users (more %v, err %v), want the 2 that were created", len(page), more, err)
	}
}

func testListWalksAllPages(t *testing.T, s users.Storage) {
	ctx := t.Context()
	want := make(map[uuid.UUID]bool)
	for range 53 {
		u, err := s.Create(ctx, users.NewUser{Email: uuid.NewString() + "@example.com", FullName: "Listed"})
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
				if _, err := s.Create(ctx, users.NewUser{Email: uuid.NewString() + "@example.com", FullName: "Concurrent"}); err != nil {
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
		page, more, err := s.List(ctx, before, 10)
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

func testGuards(t *testing.T, s users.Storage) {
	ctx := t.Context()
	str := func(s string) *string { return &s }
	u, err := s.Create(ctx, users.NewUser{Email: "ada@example.com", FullName: "Ada", Subject: "sub-ada"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.Create(ctx, users.NewUser{Email: "grace@example.com", FullName: "Grace"})
	if err != nil {
		t.Fatal(err)
	}

	// Changing one's own email's case is no conflict with oneself.
	v2, err := s.Update(ctx, u.ID, users.Patch{Email: str("ADA@example.com")}, users.Guard{Version: 1, Subject: "sub-ada"})
	if err != nil || v2.Email != "ADA@example.com" || v2.FullName != "Ada" || v2.Version != 2 || !v2.UpdatedAt.After(v2.CreatedAt) {
		t.Fatalf("update: %+v, %v", v2, err)
	}
	for name, tc := range map[string]struct {
		id    uuid.UUID
		patch users.Patch
		guard users.Guard
		want  error
	}{
		"stale version":   {u.ID, users.Patch{FullName: str("x")}, users.Guard{Version: 1}, users.ErrStale},
		"someone else's":  {u.ID, users.Patch{FullName: str("x")}, users.Guard{Subject: "sub-mallory"}, users.ErrNotOwner},
		"unbound user":    {other.ID, users.Patch{FullName: str("x")}, users.Guard{Subject: "sub-ada"}, users.ErrNotOwner},
		"unknown id":      {uuid.Must(uuid.NewV7()), users.Patch{FullName: str("x")}, users.Guard{}, users.ErrNotFound},
		"email taken":     {u.ID, users.Patch{Email: str("GRACE@example.com")}, users.Guard{}, users.ErrEmailTaken},
		"owner and stale": {u.ID, users.Patch{FullName: str("x")}, users.Guard{Version: 7, Subject: "sub-ada"}, users.ErrStale},
	} {
		if _, err := s.Update(ctx, tc.id, tc.patch, tc.guard); !errors.Is(err, tc.want) {
			t.Errorf("update, %s: err = %v, want %v", name, err, tc.want)
		}
		if tc.want == users.ErrEmailTaken {
			continue // an unguarded delete would succeed
		}
		if err := s.Delete(ctx, tc.id, tc.guard); !errors.Is(err, tc.want) {
			t.Errorf("delete, %s: err = %v, want %v", name, err, tc.want)
		}
	}
	if got, err := s.Get(ctx, u.ID); err != nil || got.Version != 2 || got.FullName != "Ada" {
		t.Errorf("refused changes changed the user: %+v, %v", got, err)
	}

	found, err := s.FindByEmail(ctx, "ada@EXAMPLE.com")
	if err != nil || found.ID != u.ID {
		t.Errorf("find by email in other case: %+v, %v", found, err)
	}
	if _, err := s.FindByEmail(ctx, "nobody@example.com"); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("find unknown email: %v", err)
	}

	if err := s.Delete(ctx, u.ID, users.Guard{Version: 2, Subject: "sub-ada"}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := s.Get(ctx, u.ID); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
	// The subject may sign up again.
	if _, err := s.Create(ctx, users.NewUser{Email: "ada2@example.com", FullName: "Ada", Subject: "sub-ada"}); err != nil {
		t.Errorf("sign-up after delete: %v", err)
	}
}
