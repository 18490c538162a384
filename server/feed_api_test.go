package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/users"
)

// TestFeedEveryClient runs the change feed and webhook management through
// every client: Connect JSON, proto and GET, gRPC, gRPC-Web, grpc-go and
// REST (with Server-Sent Events for the watch), each on a server of its
// own.
func TestFeedEveryClient(t *testing.T) {
	t.Parallel()
	for _, name := range clientNames {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ts := setup(t, setupOpts{memory: true})
			all := clientsAs(t, ts, ts.Issuer.Token("admin", users.ScopeRead, users.ScopeWrite, users.ScopeWebhooksAdmin))
			c, f := all[name], all[name].(feedClient)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()

			start, err := f.listEvents(ctx, "0", 0)
			if err != nil || len(start.Events) != 0 || start.NextAfter == "" {
				t.Fatalf("an empty feed from the start: %v, %v", start, err)
			}
			// Two watches: from the start, and from the empty feed's cursor.
			watches := []eventStream{f.watch(ctx, "0"), f.watch(ctx, start.NextAfter)}
			next := func(what string, want usersv1.UserEvent_Type) []*usersv1.UserEvent {
				t.Helper()
				var got []*usersv1.UserEvent
				for i, w := range watches {
					e, err := w.next()
					if err != nil || e.Type != want {
						t.Fatalf("watch %d, %s: %v, %v; want a %v event", i, what, e, err, want)
					}
					got = append(got, e)
				}
				if got[0].Id != got[1].Id {
					t.Errorf("%s: the watches disagree: %s and %s", what, got[0].Id, got[1].Id)
				}
				return got
			}
			ada, err := c.create(ctx, &usersv1.CreateUserRequest{Email: "ada@example.com", FullName: "Ada"})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range next("create", usersv1.UserEvent_TYPE_CREATED) {
				if e.UserId != ada.Id || e.User == nil || e.User.Email != ada.Email || e.User.Etag != ada.Etag {
					t.Errorf("created event %v, want the new user %v", e, ada)
				}
			}
			renamed, err := c.update(ctx, &usersv1.UpdateUserRequest{User: &usersv1.User{Id: ada.Id, FullName: "Ada L."}})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range next("update", usersv1.UserEvent_TYPE_UPDATED) {
				if e.User == nil || e.User.FullName != "Ada L." || e.User.Etag != renamed.Etag {
					t.Errorf("updated event %v, want the user after the change %v", e, renamed)
				}
			}
			if err := c.remove(ctx, ada.Id, ""); err != nil {
				t.Fatal(err)
			}
			for _, e := range next("delete", usersv1.UserEvent_TYPE_DELETED) {
				if e.UserId != ada.Id || e.User != nil {
					t.Errorf("deleted event %v, want the id only", e)
				}
			}

			page, err := f.listEvents(ctx, start.NextAfter, 2)
			if err != nil || len(page.Events) != 2 {
				t.Fatalf("first page: %v, %v", page, err)
			}
			rest, err := f.listEvents(ctx, page.NextAfter, 0)
			if err != nil || len(rest.Events) != 1 {
				t.Fatalf("second page: %v, %v", rest, err)
			}
			for i, e := range append(page.Events, rest.Events...) {
				// Ada was erased: no event carries her any more.
				if e.UserId != ada.Id || e.User != nil || e.OccurredAt == nil {
					t.Errorf("listed event %d after the erasure: %v", i, e)
				}
			}

			// Bad input.
			_, err = f.listEvents(ctx, "not-a-cursor", 0)
			wantField(t, "list after a cursor we did not issue", err, connect.CodeInvalidArgument, "after")
			_, err = f.listEvents(ctx, "0", -1)
			wantField(t, "negative page size", err, connect.CodeInvalidArgument, "page_size")
			_, err = f.watch(ctx, "not-a-cursor").next()
			wantField(t, "watch after a cursor we did not issue", err, connect.CodeInvalidArgument, "after")

			// Retention removed the events after this cursor: out_of_range.
			if _, err := ts.Memory.ExpireEvents(ctx, time.Now()); err != nil {
				t.Fatal(err)
			}
			_, err = f.listEvents(ctx, page.Events[0].Id, 0)
			wantCode(t, "list after an expired cursor", err, connect.CodeOutOfRange)
			_, err = f.watch(ctx, page.Events[0].Id).next()
			wantCode(t, "watch after an expired cursor", err, connect.CodeOutOfRange)

			// Webhooks.
			hook, err := f.createWebhook(ctx, &usersv1.CreateWebhookRequest{Url: "https://hooks.example.com/usersd", Types: []usersv1.UserEvent_Type{usersv1.UserEvent_TYPE_DELETED}})
			if err != nil || !strings.HasPrefix(hook.Secret, "whsec_") || hook.Webhook.Url != "https://hooks.example.com/usersd" ||
				len(hook.Webhook.Types) != 1 || hook.Webhook.Types[0] != usersv1.UserEvent_TYPE_DELETED {
				t.Fatalf("create webhook: %v, %v", hook, err)
			}
			hooks, err := f.listWebhooks(ctx)
			if err != nil || len(hooks) != 1 || hooks[0].Id != hook.Webhook.Id {
				t.Errorf("list webhooks: %v, %v", hooks, err)
			}
			_, err = f.createWebhook(ctx, &usersv1.CreateWebhookRequest{Url: "https://u:p@hooks.example.com/"})
			wantField(t, "webhook URL with credentials", err, connect.CodeInvalidArgument, "url")
			if err := f.deleteWebhook(ctx, hook.Webhook.Id); err != nil {
				t.Errorf("delete webhook: %v", err)
			}
			wantCode(t, "delete a deleted webhook", f.deleteWebhook(ctx, hook.Webhook.Id), connect.CodeNotFound)

			// Scopes: the feed needs users:read, webhooks webhooks:admin.
			writer := clientsAs(t, ts, ts.Issuer.Token("writer", users.ScopeWrite))[name].(feedClient)
			reader := clientsAs(t, ts, ts.Admin)[name].(feedClient)
			_, err = writer.listEvents(ctx, "0", 0)
			wantCode(t, "feed without users:read", err, connect.CodePermissionDenied)
			_, err = writer.watch(ctx, "0").next()
			wantCode(t, "watch without users:read", err, connect.CodePermissionDenied)
			_, err = reader.listWebhooks(ctx)
			wantCode(t, "webhooks without webhooks:admin", err, connect.CodePermissionDenied)
			_, err = clientsAs(t, ts, "")[name].(feedClient).listEvents(ctx, "0", 0)
			wantCode(t, "feed without a token", err, connect.CodeUnauthenticated)
		})
	}
}

// TestSSEResumesWithLastEventID: an EventSource that reconnects sends
// the id of the last event it got in Last-Event-ID, and the stream goes on
// after it.
func TestSSEResumesWithLastEventID(t *testing.T) {
	t.Parallel()
	ts := setup(t, setupOpts{memory: true})
	c := clients(t, ts)["rest"]
	rc := c.(restClient)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var ids []string
	for _, local := range []string{"a", "b", "c"} {
		u, err := c.create(ctx, &usersv1.CreateUserRequest{Email: local + "@example.com", FullName: local})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.Id)
	}
	first, err := rc.watch(ctx, "0").next()
	if err != nil || first.UserId != ids[0] {
		t.Fatalf("first event: %v, %v", first, err)
	}
	// after= says "0", Last-Event-ID the first event: Last-Event-ID wins.
	resumed := rc.watchFrom(ctx, "/user-events/stream?after=0", "Last-Event-ID", first.Id)
	for _, want := range ids[1:] {
		e, err := resumed.next()
		if err != nil || e.UserId != want {
			t.Fatalf("resumed: %v, %v; want the event of %s", e, err, want)
		}
	}
	_, err = rc.watchFrom(ctx, "/user-events/stream", "Last-Event-ID", "garbage").next()
	wantField(t, "Last-Event-ID that is no cursor", err, connect.CodeInvalidArgument, "after")
}
