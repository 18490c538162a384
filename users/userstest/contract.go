package userstest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/acme/usersd/users"
)

// Expirer is the retention of a feed: it forgets the events that
// occurred before a time, and answers how many.
type Expirer interface {
	ExpireEvents(ctx context.Context, before time.Time) (int64, error)
}

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
		{"every change in the feed, in order", testFeed},
		{"erasure reaches the feed", testFeedErasure},
		{"expired cursors", testFeedExpiry},
		{"webhooks", testWebhooks},
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

// allEvents reads the feed from the start until it holds want events. A
// change is served only once every transaction that began before it has
// ended, which in a busy database (other tests run beside this one) can
// be a moment after the change returned.
func allEvents(t *testing.T, s users.Storage, want int) []users.Event {
	t.Helper()
	var out []users.Event
	var after users.Cursor
	for deadline := time.Now().Add(10 * time.Second); ; {
		page, _, err := s.Events(t.Context(), after, 7)
		if err != nil {
			t.Fatalf("events after %v: %v", after, err)
		}
		out = append(out, page...)
		if len(page) == 7 {
			after = page[len(page)-1].Cursor
			continue
		}
		if len(out) >= want || time.Now().After(deadline) {
			return out
		}
		if len(out) > 0 {
			after = out[len(out)-1].Cursor
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testFeed(t *testing.T, s users.Storage) {
	ctx := t.Context()
	str := func(s string) *string { return &s }
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if page, _, err := s.Events(ctx, head, 10); err != nil || len(page) != 0 {
		t.Fatalf("events after the head of an empty feed: %v, %v", page, err)
	}
	var want []string // type and version, in the order of the changes
	var ids []uuid.UUID
	for i := range 5 {
		u, err := s.Create(ctx, users.NewUser{Email: uuid.NewString() + "@example.com", FullName: "Fed"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
		want = append(want, "created "+u.ID.String()+" 1")
		if i%2 == 0 {
			v2, err := s.Update(ctx, u.ID, users.Patch{FullName: str("Fed again")}, users.Guard{})
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, "updated "+u.ID.String()+" 2")
			if v2.FullName != "Fed again" {
				t.Fatalf("update: %+v", v2)
			}
		}
	}
	// A refused change writes no event.
	if _, err := s.Update(ctx, ids[0], users.Patch{FullName: str("x")}, users.Guard{Version: 9}); !errors.Is(err, users.ErrStale) {
		t.Fatalf("stale update: %v", err)
	}
	if _, err := s.Create(ctx, users.NewUser{Email: "FED-dup@example.com", FullName: "Dup"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, users.NewUser{Email: "fed-DUP@example.com", FullName: "Dup"}); !errors.Is(err, users.ErrEmailTaken) {
		t.Fatalf("duplicate create: %v", err)
	}
	events := allEvents(t, s, len(want)+1)
	var got []string
	for i, e := range events {
		if i > 0 && !events[i-1].Cursor.Less(e.Cursor) {
			t.Errorf("event %d does not come after event %d: %v, %v", i, i-1, events[i-1].Cursor, e.Cursor)
		}
		if e.User == nil || e.User.ID != e.UserID || e.OccurredAt.IsZero() {
			t.Fatalf("event %d: %+v", i, e)
		}
		name := map[users.EventType]string{users.EventCreated: "created", users.EventUpdated: "updated"}[e.Type]
		got = append(got, fmt.Sprintf("%s %s %d", name, e.UserID, e.User.Version))
	}
	if len(got) != len(want)+1 || !slices.Equal(got[:len(want)], want) {
		t.Errorf("feed:\n%v\nwant:\n%v\nand one more create", got, want)
	}
	head, err = s.Head(ctx)
	if err != nil || head != events[len(events)-1].Cursor {
		t.Errorf("head %v, %v; want the last event's cursor %v", head, err, events[len(events)-1].Cursor)
	}
	if page, _, err := s.Events(ctx, head, 10); err != nil || len(page) != 0 {
		t.Errorf("events after the head: %v, %v", page, err)
	}
	if page, _, err := s.Events(ctx, events[2].Cursor, 2); err != nil || len(page) != 2 || page[0].Cursor != events[3].Cursor {
		t.Errorf("events after the third: %v, %v", page, err)
	}
}

func testFeedErasure(t *testing.T, s users.Storage) {
	ctx := t.Context()
	str := func(s string) *string { return &s }
	u, err := s.Create(ctx, users.NewUser{Email: "erased@example.com", FullName: "Erased Person"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, u.ID, users.Patch{Email: str("erased2@example.com")}, users.Guard{}); err != nil {
		t.Fatal(err)
	}
	kept, err := s.Create(ctx, users.NewUser{Email: "kept@example.com", FullName: "Kept"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, u.ID, users.Guard{}); err != nil {
		t.Fatal(err)
	}
	events := allEvents(t, s, 4)
	if len(events) != 4 {
		t.Fatalf("%d events, want 4", len(events))
	}
	for _, e := range events {
		switch {
		case e.UserID == kept.ID:
			if e.User == nil || e.User.Email != "kept@example.com" {
				t.Errorf("another user's event lost its data: %+v", e)
			}
		case e.User != nil:
			t.Errorf("an event of the erased user still carries the user: %+v", e.User)
		}
	}
	if last := events[3]; last.Type != users.EventDeleted || last.UserID != u.ID || last.User != nil {
		t.Errorf("last event %+v, want the deletion with the id only", last)
	}
}

func testFeedExpiry(t *testing.T, s users.Storage) {
	ctx := t.Context()
	exp, ok := s.(Expirer)
	if !ok {
		t.Fatalf("%T has no ExpireEvents", s)
	}
	for range 3 {
		if _, err := s.Create(ctx, users.NewUser{Email: uuid.NewString() + "@example.com", FullName: "Old"}); err != nil {
			t.Fatal(err)
		}
	}
	old := allEvents(t, s, 3)
	time.Sleep(10 * time.Millisecond)
	cut := time.Now()
	time.Sleep(10 * time.Millisecond)
	fresh, err := s.Create(ctx, users.NewUser{Email: uuid.NewString() + "@example.com", FullName: "New"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := exp.ExpireEvents(ctx, cut)
	if err != nil || n != 3 {
		t.Fatalf("expire: %d, %v; want the 3 old events", n, err)
	}
	for i, e := range old[:2] {
		if _, _, err := s.Events(ctx, e.Cursor, 10); !errors.Is(err, users.ErrCursorExpired) {
			t.Errorf("after expired event %d: %v, want ErrCursorExpired", i, err)
		}
	}
	// The newest expired event is the horizon: after it nothing is missing.
	page, horizon, err := s.Events(ctx, old[2].Cursor, 10)
	if err != nil || len(page) != 1 || page[0].UserID != fresh.ID || horizon != old[2].Cursor {
		t.Errorf("after the last expired event: %v, horizon %v, %v; want the new one, and the horizon at the last expired", page, horizon, err)
	}
	if page, _, err := s.Events(ctx, users.Cursor{}, 10); err != nil || len(page) != 1 || page[0].UserID != fresh.ID {
		t.Errorf("from the start: %v, %v; want only the kept event", page, err)
	}
}

func testWebhooks(t *testing.T, s users.Storage) {
	ctx := t.Context()
	a, err := s.CreateWebhook(ctx, users.NewWebhook{URL: "https://a.example/hook", Secret: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil || a.URL != "https://a.example/hook" || a.CreatedAt.IsZero() || len(a.Types) != 0 {
		t.Fatalf("create: %+v, %v", a, err)
	}
	b, err := s.CreateWebhook(ctx, users.NewWebhook{URL: "https://b.example/hook", Types: []users.EventType{users.EventDeleted}, Secret: []byte("k")})
	if err != nil || !slices.Equal(b.Types, []users.EventType{users.EventDeleted}) {
		t.Fatalf("create with types: %+v, %v", b, err)
	}
	list, err := s.ListWebhooks(ctx)
	if err != nil || len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID {
		t.Fatalf("list: %+v, %v", list, err)
	}
	if err := s.DeleteWebhook(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteWebhook(ctx, a.ID); !errors.Is(err, users.ErrWebhookNotFound) {
		t.Errorf("second delete: %v, want ErrWebhookNotFound", err)
	}
	for i := 1; i < users.MaxWebhooks; i++ {
		if _, err := s.CreateWebhook(ctx, users.NewWebhook{URL: fmt.Sprintf("https://h%d.example/", i), Secret: []byte("k")}); err != nil {
			t.Fatalf("webhook %d: %v", i+1, err)
		}
	}
	if _, err := s.CreateWebhook(ctx, users.NewWebhook{URL: "https://one-too-many.example/", Secret: []byte("k")}); !errors.Is(err, users.ErrTooManyWebhooks) {
		t.Errorf("webhook %d: %v, want ErrTooManyWebhooks", users.MaxWebhooks+1, err)
	}
}
