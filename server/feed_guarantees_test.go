//go:build !nodb

package server_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/store"
	"github.com/acme/usersd/users"
)

// errInjected is a failure the test injects into a transaction, which
// rolls it back.
var errInjected = errors.New("injected failure")

// change is one committed change as its writer saw it.
type change struct {
	typ  usersv1.UserEvent_Type
	user string
	etag string // of the user after the change; "" for a deletion
}

func (c change) String() string { return fmt.Sprintf("%v %s %s", c.typ, c.user, c.etag) }

func changeOf(e *usersv1.UserEvent) change {
	c := change{typ: e.Type, user: e.UserId}
	if e.User != nil {
		c.etag = e.User.Etag
	}
	return c
}

// TestFeedGuarantees: 8 writers make thousands of changes through the API
// (creates, updates and deletes, on several protocols), while the store's
// hooks hold transactions open for random times and roll some back, and a
// pager, a watcher and an SSE client follow the feed from the start. Every
// reader must see exactly the committed changes, each once, in one order
// that all readers share, and each user's changes in the order they were
// made.
func TestFeedGuarantees(t *testing.T) {
	t.Parallel()
	hold := func(ctx context.Context) {
		if rand.IntN(4) == 0 {
			select {
			case <-time.After(time.Duration(rand.IntN(40)) * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
	ts := setup(t, setupOpts{hooks: func(h store.Hooks) store.Hooks {
		onCreate, onDelete := h.OnCreate, h.OnDelete
		return store.Hooks{
			OnCreate: func(ctx context.Context, tx pgx.Tx, created []users.User) error {
				hold(ctx)
				if rand.IntN(20) == 0 {
					return errInjected // the whole batch rolls back
				}
				return onCreate(ctx, tx, created)
			},
			OnDelete: func(ctx context.Context, tx pgx.Tx, id uuid.UUID) error {
				hold(ctx)
				return onDelete(ctx, tx, id)
			},
		}
	}})
	all := clients(t, ts)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	// The readers, from the start, before anything is written.
	type reader struct {
		name   string
		mu     sync.Mutex
		events []*usersv1.UserEvent
		err    error
	}
	readers := []*reader{{name: "pager (Connect proto)"}, {name: "watcher (gRPC)"}, {name: "SSE"}}
	record := func(r *reader, e *usersv1.UserEvent) {
		r.mu.Lock()
		r.events = append(r.events, e)
		r.mu.Unlock()
	}
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	var readersDone sync.WaitGroup
	readersDone.Go(func() {
		f := all["connect-proto"].(feedClient)
		after := "0"
		for readCtx.Err() == nil {
			page, err := f.listEvents(readCtx, after, 37)
			if err != nil {
				if readCtx.Err() == nil {
					readers[0].err = err
				}
				return
			}
			for _, e := range page.Events {
				record(readers[0], e)
			}
			after = page.NextAfter
			if len(page.Events) == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	})
	for i, name := range map[int]string{1: "grpc-go", 2: "rest"} {
		s := all[name].(feedClient).watch(readCtx, "0")
		readersDone.Go(func() {
			for {
				e, err := s.next()
				if err != nil {
					if readCtx.Err() == nil {
						readers[i].err = err
					}
					return
				}
				record(readers[i], e)
			}
		})
	}

	// The writers: each creates users, changes them and deletes some, on
	// its own protocol.
	const writers, rounds = 8, 300
	var mu sync.Mutex
	var committed []change
	perUser := map[string][]change{}
	commit := func(c change) {
		mu.Lock()
		committed = append(committed, c)
		perUser[c.user] = append(perUser[c.user], c)
		mu.Unlock()
	}
	var writing sync.WaitGroup
	protocols := []string{"connect-proto", "grpc", "rest", "grpc-go", "connect-json", "grpc-web", "rest", "connect-proto"}
	for w := range writers {
		c := all[protocols[w]]
		writing.Go(func() {
			var mine []*usersv1.User
			for i := range rounds {
				switch op := rand.IntN(10); {
				case op < 4 || len(mine) == 0:
					u, err := c.create(ctx, &usersv1.CreateUserRequest{Email: fmt.Sprintf("w%d-%d@example.com", w, i), FullName: "Writer"})
					if err != nil {
						continue // rolled back on purpose
					}
					commit(change{usersv1.UserEvent_TYPE_CREATED, u.Id, u.Etag})
					mine = append(mine, u)
				case op < 8:
					k := rand.IntN(len(mine))
					u, err := c.update(ctx, &usersv1.UpdateUserRequest{User: &usersv1.User{Id: mine[k].Id, FullName: fmt.Sprint("Writer ", i)}})
					if err != nil {
						t.Errorf("writer %d: update: %v", w, err)
						return
					}
					commit(change{usersv1.UserEvent_TYPE_UPDATED, u.Id, u.Etag})
					mine[k] = u
				default:
					k := rand.IntN(len(mine))
					if err := c.remove(ctx, mine[k].Id, ""); err != nil {
						t.Errorf("writer %d: delete: %v", w, err)
						return
					}
					commit(change{usersv1.UserEvent_TYPE_DELETED, mine[k].Id, ""})
					mine = slices.Delete(mine, k, k+1)
				}
			}
		})
	}
	writing.Wait()
	if t.Failed() {
		return
	}
	// Every reader catches up.
	for _, r := range readers {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			r.mu.Lock()
			n, err := len(r.events), r.err
			r.mu.Unlock()
			if n >= len(committed) || err != nil || time.Now().After(deadline) {
				break
			}
		}
	}
	stopReading()
	readersDone.Wait()
	t.Logf("%d committed changes of %d users", len(committed), len(perUser))
	if len(committed) < 500 {
		t.Fatalf("only %d changes committed: the test proves little", len(committed))
	}

	deleted := map[string]bool{}
	for _, c := range committed {
		if c.typ == usersv1.UserEvent_TYPE_DELETED {
			deleted[c.user] = true
		}
	}
	var order []string
	for _, r := range readers {
		r.mu.Lock()
		events, err := r.events, r.err
		r.mu.Unlock()
		if err != nil {
			t.Errorf("%s: %v", r.name, err)
			continue
		}
		var ids []string
		seen := map[string]bool{}
		byUser := map[string][]change{}
		for _, e := range events {
			if seen[e.Id] {
				t.Errorf("%s: event %s twice", r.name, e.Id)
			}
			seen[e.Id] = true
			ids = append(ids, e.Id)
			c := changeOf(e)
			if c.typ != usersv1.UserEvent_TYPE_DELETED && e.User == nil {
				// Read after the user's erasure: only the type and id are left.
				if !deleted[c.user] {
					t.Errorf("%s: event %s has no user, but %s was never deleted", r.name, e.Id, c.user)
				}
				c.etag = "(erased)"
			}
			byUser[c.user] = append(byUser[c.user], c)
		}
		if len(events) != len(committed) {
			t.Errorf("%s: %d events, %d committed changes", r.name, len(events), len(committed))
		}
		for user, want := range perUser {
			got := byUser[user]
			if len(got) != len(want) {
				t.Errorf("%s: user %s: %d events %v, want %d %v", r.name, user, len(got), got, len(want), want)
				continue
			}
			for k := range want {
				if got[k].typ != want[k].typ || (got[k].etag != want[k].etag && got[k].etag != "(erased)") {
					t.Errorf("%s: user %s: events %v, want in the order %v", r.name, user, got, want)
					break
				}
			}
		}
		for user := range byUser {
			if _, ok := perUser[user]; !ok {
				t.Errorf("%s: events of user %s, whose changes all rolled back", r.name, user)
			}
		}
		if order == nil {
			order = ids
		} else if strings.Join(order, ",") != strings.Join(ids, ",") {
			t.Errorf("%s reads another order than %s", r.name, readers[0].name)
		}
	}

	// Erasure reached the feed: no deleted user's email can be read back.
	f := all["connect-proto"].(feedClient)
	after := "0"
	for {
		page, err := f.listEvents(ctx, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			if deleted[e.UserId] && e.User != nil {
				t.Errorf("event %s still carries deleted user %s (%s)", e.Id, e.UserId, e.User.Email)
			}
		}
		if len(page.Events) == 0 {
			break
		}
		after = page.NextAfter
	}
}
