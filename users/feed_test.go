package users_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/users"
	"github.com/acme/usersd/users/userstest"
)

func admin() context.Context {
	return users.WithGrant(context.Background(), users.GrantAll())
}

// newService is a service over an in-memory store with a fast feed poll.
func newService(t *testing.T) (*users.Service, *userstest.Memory) {
	t.Helper()
	m := userstest.NewMemory()
	svc := users.New(m, users.Options{FeedPoll: 5 * time.Millisecond})
	t.Cleanup(svc.Close)
	return svc, m
}

func create(t *testing.T, svc *users.Service, email string) *usersv1.User {
	t.Helper()
	resp, err := svc.CreateUser(admin(), &usersv1.CreateUserRequest{Email: email, FullName: "Someone"})
	if err != nil {
		t.Fatal(err)
	}
	return resp.User
}

func TestListUserEventsInput(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t)
	for _, tc := range []struct {
		name  string
		req   *usersv1.ListUserEventsRequest
		field string
	}{
		{"not a cursor", &usersv1.ListUserEventsRequest{After: "nope"}, "after"},
		{"a page token", &usersv1.ListUserEventsRequest{After: "AZCsa2-7fQ6mAAAAAAAAAA"}, "after"},
		{"a cursor with a bad check", &usersv1.ListUserEventsRequest{After: users.EncodeCursor(users.Cursor{Tx: 5, Seq: 7})[:26] + "A"}, "after"},
		{"negative page size", &usersv1.ListUserEventsRequest{After: "0", PageSize: -1}, "page_size"},
	} {
		_, err := svc.ListUserEvents(admin(), tc.req)
		var fe *users.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: err = %v, want a FieldError on %s", tc.name, err, tc.field)
		}
	}
}

func TestListUserEventsPages(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t)
	empty, err := svc.ListUserEvents(admin(), &usersv1.ListUserEventsRequest{After: "0"})
	if err != nil || len(empty.Events) != 0 || empty.NextAfter == "" {
		t.Fatalf("empty feed from the start: %v, %v; want no events and a cursor", empty, err)
	}
	for i := range 1005 {
		create(t, svc, "u"+strings.Repeat("x", i%7)+"-"+time.Now().Format("150405.000000000")+"@example.com")
	}
	// Larger than the cap: 1000.
	page, err := svc.ListUserEvents(admin(), &usersv1.ListUserEventsRequest{After: empty.NextAfter, PageSize: 5000})
	if err != nil || len(page.Events) != users.MaxEventPageSize {
		t.Fatalf("page_size 5000: %d events, %v; want %d", len(page.Events), err, users.MaxEventPageSize)
	}
	rest, err := svc.ListUserEvents(admin(), &usersv1.ListUserEventsRequest{After: page.NextAfter})
	if err != nil || len(rest.Events) != 5 || rest.Events[0].Type != usersv1.UserEvent_TYPE_CREATED || rest.Events[0].User == nil {
		t.Fatalf("the rest: %v, %v", rest, err)
	}
	again, err := svc.ListUserEvents(admin(), &usersv1.ListUserEventsRequest{After: rest.NextAfter})
	if err != nil || len(again.Events) != 0 || again.NextAfter != rest.NextAfter {
		t.Errorf("after the end: %v, %v; want nothing and the same cursor", again, err)
	}
	now, err := svc.ListUserEvents(admin(), &usersv1.ListUserEventsRequest{})
	if err != nil || len(now.Events) != 0 || now.NextAfter != rest.NextAfter {
		t.Errorf("from now on: %v, %v; want nothing and the end's cursor", now, err)
	}
	// Default page size.
	def, err := svc.ListUserEvents(admin(), &usersv1.ListUserEventsRequest{After: "0"})
	if err != nil || len(def.Events) != users.DefaultEventPageSize {
		t.Errorf("default page: %d events, %v", len(def.Events), err)
	}
}

func TestExpiredCursorIsOutOfRange(t *testing.T) {
	t.Parallel()
	svc, m := newService(t)
	create(t, svc, "a@example.com")
	first, err := svc.ListUserEvents(admin(), &usersv1.ListUserEventsRequest{After: "0"})
	if err != nil || len(first.Events) != 1 {
		t.Fatal(first, err)
	}
	create(t, svc, "b@example.com")
	create(t, svc, "c@example.com")
	if _, err := m.ExpireEvents(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	start, err := svc.ListUserEvents(admin(), &usersv1.ListUserEventsRequest{After: "0"})
	if err != nil || len(start.Events) != 0 {
		t.Fatalf("from the start after expiry: %v, %v", start, err)
	}
	if _, err := svc.ListUserEvents(admin(), &usersv1.ListUserEventsRequest{After: first.NextAfter}); !errors.Is(err, users.ErrCursorExpired) {
		t.Errorf("list after an expired cursor: %v, want ErrCursorExpired", err)
	}
	err = svc.WatchUserEvents(admin(), &usersv1.WatchUserEventsRequest{After: first.NextAfter}, func(*usersv1.UserEvent) error { return nil })
	if !errors.Is(err, users.ErrCursorExpired) {
		t.Errorf("watch after an expired cursor: %v, want ErrCursorExpired", err)
	}
}

// watcher records what a watch sends.
type watcher struct {
	mu     sync.Mutex
	events []*usersv1.UserEvent
	ready  chan struct{}
	once   sync.Once
}

func startWatch(t *testing.T, svc *users.Service, after string) (*watcher, context.CancelFunc, chan error) {
	t.Helper()
	w := &watcher{ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(admin())
	done := make(chan error, 1)
	go func() {
		done <- svc.WatchUserEvents(ctx, &usersv1.WatchUserEventsRequest{After: after}, func(e *usersv1.UserEvent) error {
			if e == nil {
				w.once.Do(func() { close(w.ready) })
				return nil
			}
			w.mu.Lock()
			w.events = append(w.events, e)
			w.mu.Unlock()
			return nil
		})
	}()
	t.Cleanup(cancel)
	select {
	case <-w.ready:
	case err := <-done:
		t.Fatalf("watch ended before catching up: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not catch up within 5 s")
	}
	return w, cancel, done
}

func (w *watcher) waitFor(t *testing.T, n int) []*usersv1.UserEvent {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		w.mu.Lock()
		got := append([]*usersv1.UserEvent(nil), w.events...)
		w.mu.Unlock()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
	}
}

func TestWatchCatchesUpThenFollows(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t)
	a := create(t, svc, "a@example.com")
	create(t, svc, "b@example.com")
	fromStart, cancel, done := startWatch(t, svc, "0")
	fromNow, _, _ := startWatch(t, svc, "")
	if got := fromStart.waitFor(t, 2); len(got) != 2 || got[0].UserId != a.Id {
		t.Fatalf("catch-up: %v", got)
	}
	if _, err := svc.DeleteUser(admin(), &usersv1.DeleteUserRequest{Id: a.Id}); err != nil {
		t.Fatal(err)
	}
	c := create(t, svc, "c@example.com")
	got := fromStart.waitFor(t, 4)
	if len(got) != 4 || got[2].Type != usersv1.UserEvent_TYPE_DELETED || got[2].User != nil || got[3].UserId != c.Id {
		t.Errorf("after catching up: %v", got)
	}
	if got := fromNow.waitFor(t, 2); len(got) != 2 || got[0].Type != usersv1.UserEvent_TYPE_DELETED {
		t.Errorf("from now on: %v", got)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("watch after the client left: %v", err)
	}
	// Closing the service ends every watch with ErrShuttingDown.
	_, _, done2 := startWatch(t, svc, "")
	svc.Close()
	select {
	case err := <-done2:
		if !errors.Is(err, users.ErrShuttingDown) {
			t.Errorf("watch at close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("watch did not end when the service closed")
	}
}

// TestSlowWatcherCatchesUp: a watcher that does not read for a while
// (its batches are dropped) still gets every event, in order.
func TestSlowWatcherCatchesUp(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t)
	block := make(chan struct{})
	var mu sync.Mutex
	var got []string
	ctx, cancel := context.WithCancel(admin())
	defer cancel()
	go func() {
		_ = svc.WatchUserEvents(ctx, &usersv1.WatchUserEventsRequest{After: "0"}, func(e *usersv1.UserEvent) error {
			if e == nil {
				return nil
			}
			<-block
			mu.Lock()
			got = append(got, e.UserId)
			mu.Unlock()
			return nil
		})
	}()
	var want []string
	for i := range 200 {
		u := create(t, svc, "slow"+time.Now().Format("150405.000000")+"-"+string(rune('a'+i%26))+"@example.com")
		want = append(want, u.Id)
		if i%10 == 0 {
			time.Sleep(6 * time.Millisecond) // let the hub poll: many small batches
		}
	}
	close(block)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= len(want) {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("the slow watcher got %d events, want the %d in order", len(got), len(want))
	}
}

func TestFeedNeedsUsersRead(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t)
	for name, ctx := range map[string]context.Context{
		"no grant": context.Background(),
	} {
		if _, err := svc.ListUserEvents(ctx, &usersv1.ListUserEventsRequest{After: "0"}); !errors.As(err, new(*users.DeniedError)) {
			t.Errorf("list, %s: %v", name, err)
		}
		if err := svc.WatchUserEvents(ctx, &usersv1.WatchUserEventsRequest{}, func(*usersv1.UserEvent) error { return nil }); !errors.As(err, new(*users.DeniedError)) {
			t.Errorf("watch, %s: %v", name, err)
		}
		if _, err := svc.CreateWebhook(ctx, &usersv1.CreateWebhookRequest{Url: "https://example.com/h"}); !errors.As(err, new(*users.DeniedError)) {
			t.Errorf("create webhook, %s: %v", name, err)
		}
	}
}

func TestWebhookURLs(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t)
	open := users.New(userstest.NewMemory(), users.Options{AllowPrivateWebhooks: true})
	t.Cleanup(open.Close)
	for _, tc := range []struct {
		url             string
		ok, okIfPrivate bool
	}{
		{"https://hooks.example.com/usersd", true, true},
		{"http://hooks.example.com:8080/x?y=1", true, true},
		{"ftp://hooks.example.com/", false, false},
		{"/relative", false, false},
		{"hooks.example.com/x", false, false},
		{"https://user:pw@hooks.example.com/", false, false},
		{"https://user@hooks.example.com/", false, false},
		{"https://hooks.example.com/" + strings.Repeat("a", 2048), false, false},
		{"http://127.0.0.1:9000/hook", false, true},
		{"http://[::1]/hook", false, true},
		{"http://localhost/hook", false, true},
		{"http://10.1.2.3/hook", false, true},
		{"http://192.168.1.1/hook", false, true},
		{"http://169.254.169.254/latest/meta-data", false, true},
		{"http://[fe80::1]/hook", false, true},
		{"http://0.0.0.0/hook", false, true},
		{"http://[::ffff:127.0.0.1]/hook", false, true},
		{"http://100.64.0.1/hook", false, true},
	} {
		_, err := svc.CreateWebhook(admin(), &usersv1.CreateWebhookRequest{Url: tc.url})
		if (err == nil) != tc.ok {
			t.Errorf("%.60s: err = %v, want ok %v", tc.url, err, tc.ok)
		}
		if err != nil {
			var fe *users.FieldError
			if !errors.As(err, &fe) || fe.Field != "url" {
				t.Errorf("%.60s: err = %v, want a FieldError on url", tc.url, err)
			}
		}
		if _, err := open.CreateWebhook(admin(), &usersv1.CreateWebhookRequest{Url: tc.url}); (err == nil) != tc.okIfPrivate {
			t.Errorf("%.60s with private addresses allowed: err = %v, want ok %v", tc.url, err, tc.okIfPrivate)
		}
	}
	resp, err := svc.CreateWebhook(admin(), &usersv1.CreateWebhookRequest{Url: "https://h.example/", Types: []usersv1.UserEvent_Type{usersv1.UserEvent_TYPE_DELETED, usersv1.UserEvent_TYPE_CREATED, usersv1.UserEvent_TYPE_DELETED}})
	if err != nil || len(resp.Webhook.Types) != 2 || resp.Webhook.Types[0] != usersv1.UserEvent_TYPE_CREATED || !strings.HasPrefix(resp.Secret, "whsec_") || len(resp.Secret) != len("whsec_")+44 {
		t.Errorf("create with types: %v, %v", resp, err)
	}
	if _, err := svc.CreateWebhook(admin(), &usersv1.CreateWebhookRequest{Url: "https://h.example/", Types: []usersv1.UserEvent_Type{9}}); err == nil {
		t.Error("an unknown event type was accepted")
	}
}
