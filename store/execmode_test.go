//go:build !nodb

package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/store"
	"github.com/acme/usersd/users"
)

// TestQueryExecModes runs every query of the store in each of pgx's query
// modes. PgBouncer's transaction pooling needs default_query_exec_mode=exec
// (documented for DATABASE_URL), where pgx takes parameter types from Go
// types instead of asking the server: a parameter type pgx does not know
// then fails every call that uses it, which the default mode hides.
func TestQueryExecModes(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"cache_statement", "exec", "simple_protocol"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			url := dbtest.URL(t)
			sep := "?"
			if strings.Contains(url, "?") {
				sep = "&"
			}
			db, err := store.Open(context.Background(), store.Config{
				URL: url + sep + "default_query_exec_mode=" + mode, MaxConns: 4, AcquireTimeout: 5 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(db.Close)
			exerciseStore(t, db, store.NewUsers(db, store.Hooks{}))
		})
	}
}

// exerciseStore calls every method of Users once on its success path and
// once on a refusal.
func exerciseStore(t *testing.T, db *store.DB, st *store.Users) {
	ctx := t.Context()

	// Concurrent creates share a batch: the multi-row insert, and a
	// duplicate inside it.
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() {
			email := fmt.Sprintf("user%d@example.com", i)
			if i == 5 {
				email = "USER0@example.com"
			}
			_, errs[i] = st.Create(ctx, users.NewUser{Email: email, FullName: "Someone", Subject: fmt.Sprintf("sub-%d", i)})
		})
	}
	wg.Wait()
	dup := 0
	for i, err := range errs {
		switch {
		case errors.Is(err, users.ErrEmailTaken):
			dup++
		case err != nil:
			t.Fatalf("create %d: %v", i, err)
		}
	}
	if dup != 1 {
		t.Fatalf("%d creates of one email (in two cases) were refused, want 1: %v", dup, errs)
	}

	u, err := st.FindByEmail(ctx, "USER1@EXAMPLE.COM")
	if err != nil {
		t.Fatalf("find by email: %v", err)
	}
	got, err := st.Get(ctx, u.ID)
	if err != nil || got.Email != "user1@example.com" {
		t.Fatalf("get %s: %+v, %v", u.ID, got, err)
	}
	if _, err := st.Get(ctx, uuid.Must(uuid.NewV7())); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("get of an unknown id: %v, want ErrNotFound", err)
	}
	if _, _, err := st.GetForWelcome(ctx, u.ID); err != nil {
		t.Errorf("get for welcome: %v", err)
	}
	if err := db.InTx(ctx, func(tx pgx.Tx) error { return st.MarkWelcomedTx(ctx, tx, u.ID) }); err != nil {
		t.Errorf("mark welcomed: %v", err)
	}
	if _, welcomed, err := st.GetForWelcome(ctx, u.ID); err != nil || !welcomed {
		t.Errorf("get for welcome after marking: welcomed %v, %v", welcomed, err)
	}

	page, more, err := st.List(ctx, uuid.Nil, 3)
	if err != nil || len(page) != 3 || !more {
		t.Fatalf("list first page: %d users, more %v, %v", len(page), more, err)
	}
	rest, more, err := st.List(ctx, page[2].ID, 3)
	if err != nil || len(rest) != 2 || more {
		t.Fatalf("list second page: %d users, more %v, %v", len(rest), more, err)
	}

	name := "Renamed"
	updated, err := st.Update(ctx, u.ID, users.Patch{FullName: &name}, users.Guard{Version: got.Version, Subject: "sub-1"})
	if err != nil || updated.FullName != name {
		t.Fatalf("update: %+v, %v", updated, err)
	}
	if _, err := st.Update(ctx, u.ID, users.Patch{FullName: &name}, users.Guard{Version: got.Version}); !errors.Is(err, users.ErrStale) {
		t.Errorf("update with a stale version: %v, want ErrStale", err)
	}
	if err := st.Delete(ctx, u.ID, users.Guard{Subject: "someone-else"}); !errors.Is(err, users.ErrNotOwner) {
		t.Errorf("delete of someone else's user: %v, want ErrNotOwner", err)
	}
	if err := st.Delete(ctx, u.ID, users.Guard{Version: updated.Version}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := st.Delete(ctx, u.ID, users.Guard{}); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
}
