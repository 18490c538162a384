//go:build !nodb

package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

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
