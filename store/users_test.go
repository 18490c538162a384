//go:build !nodb

package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/store"
	"github.com/acme/usersd/users"
	"github.com/acme/usersd/users/userstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func setup(t *testing.T) (*store.Users, *store.DB) {
	t.Helper()
	db := dbtest.New(t, store.Config{MaxConns: 8, AcquireTimeout: 5 * time.Second})
	return store.NewUsers(db, store.Hooks{}), db
}

// TestStorageContract holds the PostgreSQL store to the contract of
// users.Storage, the one the in-memory fake keeps too.
func TestStorageContract(t *testing.T) {
	t.Parallel()
	userstest.TestStorage(t, func(t *testing.T) users.Storage {
		s, _ := setup(t)
		return s
	})
}

func TestCreateHookRollsBack(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t, store.Config{MaxConns: 4})
	boom := errors.New("boom")
	st := store.NewUsers(db, store.Hooks{OnCreate: func(context.Context, pgx.Tx, []users.User) error { return boom }})
	if _, err := st.Create(t.Context(), users.NewUser{Email: "hook@example.com", FullName: "Hook"}); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the hook's error", err)
	}
	var n int
	if err := db.Pool.QueryRow(t.Context(), "SELECT count(*) FROM users").Scan(&n); err != nil || n != 0 {
		t.Errorf("users = %d (err %v), want 0 after a failed hook", n, err)
	}
}

// TestFeedVersionOrderUnderContention: many concurrent updates of the
// same few users; each user's events must come in version order, which
// needs the user's lock to be taken before the transaction gets its xid.
func TestFeedVersionOrderUnderContention(t *testing.T) {
	t.Parallel()
	st, _ := setup(t)
	ctx := t.Context()
	var ids []uuid.UUID
	for i := range 3 {
		u, err := st.Create(ctx, users.NewUser{Email: fmt.Sprintf("hot%d@example.com", i), FullName: "Hot"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 150 {
				name := fmt.Sprintf("w%d-%d", w, i)
				if _, err := st.Update(ctx, ids[(w+i)%len(ids)], users.Patch{FullName: &name}, users.Guard{}); err != nil {
					t.Errorf("update: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	last := map[uuid.UUID]int64{}
	n := 0
	var after users.Cursor
	for deadline := time.Now().Add(10 * time.Second); n < 3+8*150 && time.Now().Before(deadline); {
		page, _, err := st.Events(ctx, after, 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			n++
			if e.User.Version <= last[e.UserID] {
				t.Fatalf("user %s: version %d after version %d", e.UserID, e.User.Version, last[e.UserID])
			}
			last[e.UserID] = e.User.Version
			after = e.Cursor
		}
	}
	if n != 3+8*150 {
		t.Errorf("%d events, want %d", n, 3+8*150)
	}
}
