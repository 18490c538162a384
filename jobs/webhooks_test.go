//go:build !nodb

package jobs_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/internal/logtest"
	"github.com/acme/usersd/jobs"
	"github.com/acme/usersd/restjson"
	"github.com/acme/usersd/store"
	"github.com/acme/usersd/users"
)

// receiver is a webhook endpoint on loopback that records what it gets
// and answers as status says.
type receiver struct {
	*httptest.Server
	mu         sync.Mutex
	deliveries []delivery
	status     atomic.Int32 // what it answers; 0 means 204
	attempts   atomic.Int32
}

type delivery struct {
	header http.Header
	body   []byte
	event  restjson.Event
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.attempts.Add(1)
		if s := r.status.Load(); s != 0 {
			w.WriteHeader(int(s))
			return
		}
		var e restjson.Event
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("delivery body is not an event: %v: %s", err, body)
		}
		r.mu.Lock()
		r.deliveries = append(r.deliveries, delivery{req.Header.Clone(), body, e})
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

// waitFor returns the deliveries once there are n (distinct webhook-ids).
func (r *receiver) waitFor(t *testing.T, n int) []delivery {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r.mu.Lock()
		var got []delivery
		seen := map[string]bool{}
		for _, d := range r.deliveries {
			if id := d.header.Get("webhook-id"); !seen[id] {
				seen[id] = true
				got = append(got, d)
			}
		}
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries within 20 s, want %d (%d attempts)", len(got), n, r.attempts.Load())
		}
	}
}

type hookEnv struct {
	users *store.Users
}

// setupWebhooks runs River with the webhook worker (retries after 50 ms,
// giving up after giveUp) and the dispatcher, as usersd does.
func setupWebhooks(t *testing.T, giveUp time.Duration) *hookEnv {
	t.Helper()
	db := dbtest.New(t, store.Config{MaxConns: 10})
	log := logtest.New(t)
	e := &hookEnv{users: store.NewUsers(db, store.Hooks{})}
	workers := river.NewWorkers()
	river.AddWorker(workers, &jobs.WebhookWorker{Users: e.users, Client: jobs.NewWebhookClient(true), Log: log,
		FirstRetry: 50 * time.Millisecond, GiveUpAfter: giveUp})
	client, err := river.NewClient(riverpgxv5.New(db.Pool), &river.Config{
		Logger: log, Workers: workers, TestOnly: true,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 4}},
		FetchCooldown:     20 * time.Millisecond,
		FetchPollInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	var dispatching sync.WaitGroup
	dispatching.Go(func() {
		(&jobs.WebhookDispatcher{Users: e.users, River: client, Interval: 50 * time.Millisecond, Log: log}).Run(ctx)
	})
	t.Cleanup(func() {
		stop()
		dispatching.Wait()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = client.Stop(sctx)
	})
	return e
}

func (e *hookEnv) webhook(t *testing.T, url string, types ...users.EventType) []byte {
	t.Helper()
	key := []byte("0123456789abcdef0123456789abcdef")
	if _, err := e.users.CreateWebhook(t.Context(), users.NewWebhook{URL: url, Types: types, Secret: key}); err != nil {
		t.Fatal(err)
	}
	return key
}

func (e *hookEnv) create(t *testing.T, n int) []users.User {
	t.Helper()
	var out []users.User
	for range n {
		u, err := e.users.Create(t.Context(), users.NewUser{Email: uuid.NewString() + "@example.com", FullName: "Hooked"})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

// TestWebhookRetriesUntilAccepted: a receiver that fails three times and
// then accepts gets the event, signed.
func TestWebhookRetriesUntilAccepted(t *testing.T) {
	t.Parallel()
	e := setupWebhooks(t, time.Hour)
	r := newReceiver(t)
	r.status.Store(http.StatusServiceUnavailable)
	key := e.webhook(t, r.URL+"/hook")
	u := e.create(t, 1)[0]
	for r.attempts.Load() < 3 {
		time.Sleep(10 * time.Millisecond)
	}
	r.status.Store(0)
	d := r.waitFor(t, 1)[0]
	if d.event.Type != "created" || d.event.UserID != u.ID.String() || d.event.User == nil || d.event.User.Email != u.Email {
		t.Errorf("delivered %+v, want the creation of %s", d.event, u.ID)
	}
	if d.header.Get("webhook-id") != d.event.ID || d.header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", d.header)
	}
	checkSignature(t, key, d)
}

// checkSignature verifies a delivery with an implementation of Standard
// Webhooks' scheme independent of ours (Python's hmac).
func checkSignature(t *testing.T, key []byte, d delivery) {
	t.Helper()
	secret := users.EncodeWebhookSecret(key)
	script := `
import base64, hmac, hashlib, sys
secret, msg_id, ts, sig = sys.argv[1:5]
body = sys.stdin.buffer.read()
key = base64.b64decode(secret.removeprefix("whsec_"))
want = base64.b64encode(hmac.new(key, msg_id.encode() + b"." + ts.encode() + b"." + body, hashlib.sha256).digest()).decode()
ok = any(s.split(",", 1) == ["v1", want] for s in sig.split(" "))
sys.exit(0 if ok else 1)
`
	cmd := exec.Command("python3", "-c", script, secret, d.header.Get("webhook-id"), d.header.Get("webhook-timestamp"), d.header.Get("webhook-signature"))
	cmd.Stdin = strings.NewReader(string(d.body))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("the signature does not verify with Python's hmac: %v %s (headers %v)", err, out, d.header)
	}
	if ts, err := time.Parse(time.RFC3339, time.Unix(mustInt(t, d.header.Get("webhook-timestamp")), 0).Format(time.RFC3339)); err != nil || time.Since(ts) > time.Minute {
		t.Errorf("webhook-timestamp %q is not now", d.header.Get("webhook-timestamp"))
	}
	if _, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(d.header.Get("webhook-signature"), "v1,")); err != nil {
		t.Errorf("signature is not base64: %v", err)
	}
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("%q is not a number", s)
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// TestWebhookDownThenUp: a receiver that is down for a while gets every
// event afterwards, in feed order; a second, healthy webhook is not held
// up meanwhile.
func TestWebhookDownThenUp(t *testing.T) {
	t.Parallel()
	e := setupWebhooks(t, time.Hour)
	down, up := newReceiver(t), newReceiver(t)
	down.status.Store(http.StatusBadGateway)
	e.webhook(t, down.URL)
	e.webhook(t, up.URL)
	created := e.create(t, 20)
	// The healthy webhook gets everything while the other fails.
	if got := up.waitFor(t, 20); len(got) != 20 {
		t.Fatalf("healthy webhook: %d deliveries", len(got))
	}
	if down.attempts.Load() == 0 {
		t.Fatal("the failing webhook was never tried")
	}
	down.status.Store(0)
	got := down.waitFor(t, 20)
	for i, d := range got {
		if d.event.UserID != created[i].ID.String() {
			t.Fatalf("delivery %d is of %s, want %s: not in feed order", i, d.event.UserID, created[i].ID)
		}
	}
}

// TestWebhookTypesAndGiveUp: a webhook gets only its types; an event that
// keeps failing past the give-up time is skipped, and the next one is
// delivered.
func TestWebhookTypesAndGiveUp(t *testing.T) {
	t.Parallel()
	e := setupWebhooks(t, 300*time.Millisecond)
	r := newReceiver(t)
	e.webhook(t, r.URL, users.EventDeleted)
	r.status.Store(http.StatusInternalServerError)
	us := e.create(t, 3)
	if err := e.users.Delete(t.Context(), us[0].ID, users.Guard{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond) // the first deletion is given up
	r.status.Store(0)
	if err := e.users.Delete(t.Context(), us[1].ID, users.Guard{}); err != nil {
		t.Fatal(err)
	}
	got := r.waitFor(t, 1)
	if len(got) != 1 || got[0].event.Type != "deleted" || got[0].event.UserID != us[1].ID.String() || got[0].event.User != nil {
		t.Errorf("deliveries %+v, want only the second deletion", got)
	}
}
