//go:build cluster

package cluster

import (
	"bufio"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/gen/users/v1/usersv1connect"
	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/internal/loadtest"
	"github.com/acme/usersd/internal/proctest"
	"github.com/acme/usersd/restjson"
)

// The change feed across replicas: what the rolling restart's load commits
// must reach every consumer of the feed that follows it through HAProxy, once
// and in the feed's order, although every replica that serves a stream or
// works a delivery is restarted meanwhile.

const (
	// feedSettle bounds the wait, once the load has stopped, for the feed to
	// serve every committed change and for each consumer to have it: the
	// feed serves a change within about 200 ms, the dispatcher queues
	// deliveries every second, and each delivery the receiver refused comes
	// again after the first retry (about 5 s, at most 10), by which time the
	// webhook is a thousand events or more behind.
	feedSettle = 30 * time.Second
	// minStreamExpiry is how long HAProxy must be willing to leave an idle
	// stream alone: longer than every timeout of haproxy.cfg's defaults.
	minStreamExpiry = 5 * time.Minute
)

// feedEvent is one event as a consumer got it.
type feedEvent struct {
	id, typ, userID string
	// etag names the user's version after the change; empty when the event
	// carries no user (a deletion, or an event erased by a later deletion).
	etag string
}

func (e feedEvent) String() string {
	return fmt.Sprintf("%s %s %s (%s)", e.id, e.typ, e.userID, e.etag)
}

func fromREST(e restjson.Event) feedEvent {
	fe := feedEvent{id: e.ID, typ: e.Type, userID: e.UserID}
	if e.User != nil {
		fe.etag = e.User.ETag
	}
	return fe
}

func fromProto(e *usersv1.UserEvent) feedEvent {
	return feedEvent{id: e.GetId(), typ: restjson.EventTypes[e.GetType()], userID: e.GetUserId(), etag: e.GetUser().GetEtag()}
}

// errServerEnded is a stream that usersd ended on purpose, answering
// unavailable: it does so when it shuts down, for its watchers to go on
// elsewhere. Every other end of a stream is a failure.
var errServerEnded = errors.New("usersd ended the stream: unavailable")

// errNoWord is a stream that ended without an error event or status.
var errNoWord = errors.New("the stream ended without a word")

// A follow opens one stream of the feed after from, or, when last is set,
// after last, the id of the last event the watcher got; it passes each
// event to got and returns when the stream ends.
type follow func(ctx context.Context, from, last string, got func(feedEvent)) error

// watcher follows the feed the way a consumer does: it opens a stream and,
// whenever the stream ends or fails, opens another from the last event it
// got.
type watcher struct {
	name   string
	mu     sync.Mutex
	events []feedEvent
	conns  []feedConn
	cancel context.CancelFunc
	done   chan struct{}
}

// feedConn is one stream a watcher opened.
type feedConn struct {
	reqID  string
	events int
	end    error // nil while it is open
}

func startWatcher(t testing.TB, name, from string, f follow) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{name: name, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for n := 1; ctx.Err() == nil; n++ {
			reqID := fmt.Sprintf("feed-%s-%d", strings.ReplaceAll(name, "/", "-"), n)
			w.mu.Lock()
			w.conns = append(w.conns, feedConn{reqID: reqID})
			var last string
			if len(w.events) > 0 {
				last = w.events[len(w.events)-1].id
			}
			w.mu.Unlock()
			err := f(context.WithValue(ctx, reqIDKey{}, reqID), from, last, w.add)
			if ctx.Err() != nil {
				return // stopped by the test: the stream was still open
			}
			w.mu.Lock()
			w.conns[len(w.conns)-1].end = err
			w.mu.Unlock()
			// Not at once: a stream that fails right away must not spin.
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *watcher) add(e feedEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events = append(w.events, e)
	w.conns[len(w.conns)-1].events++
}

// stop closes the open stream and waits for the watcher to end.
func (w *watcher) stop() {
	w.cancel()
	<-w.done
}

func (w *watcher) has(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.ContainsFunc(w.events, func(e feedEvent) bool { return e.id == id })
}

func (w *watcher) got() ([]feedEvent, []feedConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events), slices.Clone(w.conns)
}

// followSSE reads GET /user-events/stream as a browser's EventSource does:
// the same URL every time, with Last-Event-ID once it has had an event.
func followSSE(hc *http.Client, base string) follow {
	return func(ctx context.Context, from, last string, got func(feedEvent)) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/user-events/stream?"+url.Values{"after": {from}}.Encode(), nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", "text/event-stream")
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return fmt.Errorf("status %d, Content-Type %q: %q", resp.StatusCode, ct, b)
		}
		return readEventStream(resp.Body, got)
	}
}

// readEventStream parses Server-Sent Events ("field: value" lines, a blank
// line ends an event, a line that starts with a colon is a comment) until
// the stream ends: at an "error" event, at the end of the body, or at
// anything usersd does not send.
func readEventStream(r io.Reader, got func(feedEvent)) error {
	sc := bufio.NewScanner(r)
	var id, kind string
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line != "" {
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "": // a comment: the keep-alive
			case "id":
				id = value
			case "event":
				kind = value
			case "data":
				data = append(data, value)
			default:
				return fmt.Errorf("unexpected field in %q", line)
			}
			continue
		}
		body := []byte(strings.Join(data, "\n"))
		switch kind {
		case "user":
			var e restjson.Event
			dec := json.NewDecoder(strings.NewReader(string(body)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&e); err != nil || e.ID != id {
				return fmt.Errorf("event %q (id: %q): %v", body, id, err)
			}
			got(fromREST(e))
		case "error":
			var e struct{ Error, Message string }
			if json.Unmarshal(body, &e) == nil && e.Error == "unavailable" {
				return fmt.Errorf("%w (%s)", errServerEnded, e.Message)
			}
			return fmt.Errorf("error event %q", body)
		default:
			if kind != "" || len(data) > 0 {
				return fmt.Errorf("unexpected event %q: %q", kind, body)
			}
		}
		kind, data = "", nil
	}
	return cmp.Or(sc.Err(), errNoWord)
}

// followRPC calls WatchUserEvents, resuming after the last event it got.
func followRPC(client usersv1connect.UserServiceClient) follow {
	return func(ctx context.Context, from, last string, got func(feedEvent)) error {
		s, err := client.WatchUserEvents(ctx, connect.NewRequest(&usersv1.WatchUserEventsRequest{After: cmp.Or(last, from)}))
		if err != nil {
			return rpcErr(err)
		}
		defer s.Close()
		for s.Receive() {
			got(fromProto(s.Msg()))
		}
		switch err := s.Err(); {
		case err == nil:
			return errNoWord
		case connect.CodeOf(err) == connect.CodeUnavailable && connect.IsWireError(err):
			return fmt.Errorf("%w (%v)", errServerEnded, err)
		default:
			return rpcErr(err)
		}
	}
}

// hookReceiver is the webhook's endpoint, on loopback: it keeps every
// delivery as it came and acknowledges it, except when told to refuse the
// next one, which it keeps all the same and answers 503: to the service,
// an acknowledgement lost on the way, which it must make up for by
// delivering the event again.
type hookReceiver struct {
	*httptest.Server
	mu         sync.Mutex
	deliveries []hookDelivery
	acked      map[string]bool // the event ids it answered 204
	refuse     bool            // the next delivery
	refused    []string        // the event ids it answered 503
}

type hookDelivery struct {
	at     time.Time
	header http.Header
	body   []byte
}

func startHookReceiver(t testing.TB) *hookReceiver {
	h := &hookReceiver{acked: map[string]bool{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		id := r.Header.Get("webhook-id")
		h.mu.Lock()
		h.deliveries = append(h.deliveries, hookDelivery{at: time.Now(), header: r.Header.Clone(), body: body})
		refuse := h.refuse
		if refuse {
			h.refuse = false
			h.refused = append(h.refused, id)
		} else {
			h.acked[id] = true
		}
		h.mu.Unlock()
		if refuse {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookReceiver) got() ([]hookDelivery, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.deliveries), slices.Clone(h.refused)
}

// refuseNext arms a refusal and returns a function that reports whether
// it has happened.
func (h *hookReceiver) refuseNext() func() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refuse = true
	n := len(h.refused)
	return func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.refused) > n
	}
}

func (h *hookReceiver) hasAcked(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.acked[id]
}

// verifyDelivery checks a delivery as a Standard Webhooks consumer does:
// the signature ("v1,<base64 HMAC-SHA256 of id.timestamp.body>", one of
// several separated by spaces) with the secret's key, a timestamp close to
// now, and a body that is the event the webhook-id names.
func verifyDelivery(key []byte, d hookDelivery) (feedEvent, error) {
	id, ts := d.header.Get("webhook-id"), d.header.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return feedEvent{}, fmt.Errorf("webhook-timestamp %q: %v", ts, err)
	}
	if skew := d.at.Sub(time.Unix(sec, 0)); skew.Abs() > time.Minute {
		return feedEvent{}, fmt.Errorf("webhook-timestamp %s is %s off the time it arrived", ts, skew.Round(time.Second))
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(d.body)
	want := mac.Sum(nil)
	signed := false
	for _, sig := range strings.Fields(d.header.Get("webhook-signature")) {
		version, b64, _ := strings.Cut(sig, ",")
		raw, err := base64.StdEncoding.DecodeString(b64)
		signed = signed || (version == "v1" && err == nil && hmac.Equal(raw, want))
	}
	if !signed {
		return feedEvent{}, fmt.Errorf("no v1 signature matches: webhook-signature %q", d.header.Get("webhook-signature"))
	}
	var e restjson.Event
	dec := json.NewDecoder(strings.NewReader(string(d.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.ID != id {
		return feedEvent{}, fmt.Errorf("body %q for webhook-id %q: %v", d.body, id, err)
	}
	return fromREST(e), nil
}

// feedCheck is everything that follows the feed through one phase.
type feedCheck struct {
	c        *cluster
	admin    entry  // REST with the token that manages webhooks
	from     string // the feed's end when the phase began
	watchers []*watcher
	hook     *hookReceiver
	hookID   string
	key      []byte    // the webhook's signing key
	db       *pgx.Conn // straight to PostgreSQL, for River's jobs (guardDeliveries)
}

// startFeedCheck registers a webhook to a receiver of its own, takes the
// feed's position, and starts the watchers from it: SSE over HTTP/1.1 and
// h2c, WatchUserEvents over Connect (HTTP/1.1) and gRPC (h2c), all
// through HAProxy. The webhook gets the events after the feed's end when it
// was created, which is the position: nothing writes in between.
func startFeedCheck(t *testing.T, c *cluster) *feedCheck {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	f := &feedCheck{c: c, hook: startHookReceiver(t), db: dbtest.Connect(t, c.db.URL)}
	// Every run sees a retry, whether or not guardDeliveries needs one.
	f.hook.refuseNext()
	f.admin = entry{name: "rest/h1", hc: newClient(t, c.adminToken, false), base: c.haproxy.url}
	var created struct {
		Webhook struct{ ID string }
		Secret  string
	}
	if err := f.admin.rest(ctx, http.MethodPost, "/webhooks", map[string]string{"url": f.hook.URL + "/usersd"}, http.StatusCreated, &created); err != nil {
		t.Fatalf("create the webhook: %v", err)
	}
	b64, ok := strings.CutPrefix(created.Secret, "whsec_")
	key, err := base64.StdEncoding.DecodeString(b64)
	if !ok || err != nil || len(key) == 0 || created.Webhook.ID == "" {
		t.Fatalf("created webhook %q with secret %q (%v)", created.Webhook.ID, created.Secret, err)
	}
	f.hookID, f.key = created.Webhook.ID, key
	t.Cleanup(func() { f.deleteWebhook(t) })

	if _, f.from, err = f.page(ctx, ""); err != nil {
		t.Fatalf("the feed's position: %v", err)
	}
	h1, h2 := newClient(t, c.token, false), newClient(t, c.token, true)
	f.watchers = []*watcher{
		startWatcher(t, "sse/h1", f.from, followSSE(h1, c.haproxy.url)),
		startWatcher(t, "sse/h2c", f.from, followSSE(h2, c.haproxy.url)),
		startWatcher(t, "connect/h1", f.from, followRPC(usersv1connect.NewUserServiceClient(h1, c.haproxy.url))),
		startWatcher(t, "grpc/h2c", f.from, followRPC(usersv1connect.NewUserServiceClient(h2, c.haproxy.url, connect.WithGRPC()))),
	}
	return f
}

// guardDeliveries keeps the webhook's delivery job off p from now until
// the returned function is called, once p has exited. The job does not
// stop at River's soft stop: it delivers for up to 30 s, its budget, and
// under the load it always has more to deliver, so a replica working it at
// SIGTERM waits out its shutdown window and then cancels it mid-statement,
// and through PgBouncer 1.18 in transaction pooling such a cancel has
// failed other clients' statements and crashed PgBouncer. So whenever the
// job runs on p, the receiver refuses its next delivery: the job snoozes
// (its retry comes after about 5 s, by when p takes no more jobs) and p
// stops at once, as it does without a webhook.
func (f *feedCheck) guardDeliveries(t *testing.T, p *proctest.Process) (stop func()) {
	client := riverClientID(t, p)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var refused func() bool // the refusal armed last
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			var running bool
			err := f.db.QueryRow(context.Background(), `SELECT count(*) > 0 FROM river_job WHERE kind = 'webhook_delivery'
				AND state = 'running' AND attempted_by[cardinality(attempted_by)] = $1`, client).Scan(&running)
			switch {
			case err != nil:
				t.Errorf("the webhook's delivery job on %s: %v", p.Name, err)
				return
			case running && refused == nil:
				refused = f.hook.refuseNext()
			case !running && refused != nil && refused():
				refused = nil // snoozed: it may come back
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// deleteWebhook stops the deliveries: River jobs that the phases after this
// one must not find running.
func (f *feedCheck) deleteWebhook(t testing.TB) {
	if f.hookID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.admin.rest(ctx, http.MethodDelete, "/webhooks/"+f.hookID, nil, http.StatusNoContent, nil); err != nil {
		t.Errorf("delete the webhook: %v", err)
	}
	f.hookID = ""
}

// page is one page of GET /user-events after after.
func (f *feedCheck) page(ctx context.Context, after string) ([]feedEvent, string, error) {
	var page struct {
		Events    []restjson.Event `json:"events"`
		NextAfter string           `json:"next_after"`
	}
	q := url.Values{"after": {after}, "page_size": {"1000"}}
	if err := f.admin.rest(ctx, http.MethodGet, "/user-events?"+q.Encode(), nil, http.StatusOK, &page); err != nil {
		return nil, "", err
	}
	if page.NextAfter == "" {
		return nil, "", errors.New("no next_after")
	}
	var out []feedEvent
	for _, e := range page.Events {
		out = append(out, fromREST(e))
	}
	return out, page.NextAfter, nil
}

// committed are the changes the load was told succeeded, by user, in the
// order each user's worker made them.
func committed(calls []call) (map[string][]feedEvent, int) {
	byUser := map[string][]feedEvent{}
	n := 0
	types := map[string]string{"create": "created", "update": "updated", "delete": "deleted"}
	for _, cl := range calls {
		typ, write := types[cl.Op]
		if !write || cl.Result.err != nil {
			continue
		}
		byUser[cl.Result.userID] = append(byUser[cl.Result.userID], feedEvent{typ: typ, userID: cl.Result.userID, etag: cl.Result.etag})
		n++
	}
	return byUser, n
}

// verify waits, once the load has stopped, until the feed serves every
// change the load committed and each consumer has it, and then checks
// that ListUserEvents from the position has exactly the load's changes,
// each user's in the order the load made them, and that every watcher and
// the webhook got exactly what ListUserEvents has, in its order, each event
// once (the webhook's retries aside, told apart by webhook-id), every
// delivery signed. It stops the watchers and deletes the webhook.
func (f *feedCheck) verify(t *testing.T, calls []call) {
	start := time.Now()
	deadline := start.Add(feedSettle)
	wantByUser, wantN := committed(calls)
	if wantN == 0 {
		t.Fatal("the load committed no change")
	}

	// The feed from the position, read after the load: the reference.
	var feed []feedEvent
read:
	for after := f.from; ; {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		events, next, err := f.page(ctx, after)
		cancel()
		if err != nil {
			t.Fatalf("ListUserEvents after %q: %v", after, err)
		}
		feed, after = append(feed, events...), next
		switch {
		case len(events) > 0:
		case len(feed) >= wantN || time.Now().After(deadline):
			break read
		default:
			time.Sleep(100 * time.Millisecond)
		}
	}
	served := time.Since(start)
	wantETag := f.checkAgainstLoad(t, feed, wantByUser, wantN)
	if len(feed) == 0 {
		t.FailNow()
	}

	// Every consumer has the feed's last event, or time is up.
	lastID := feed[len(feed)-1].id
	for _, w := range f.watchers {
		for !w.has(lastID) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Acknowledged: a refused delivery comes again, and before the next.
	for !f.hook.hasAcked(lastID) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	settled := time.Since(start)

	// The streams are open now: HAProxy must be prepared to leave them idle.
	expiries := f.checkStreamExpiries(t)
	for _, w := range f.watchers {
		w.stop()
	}
	f.deleteWebhook(t)

	var summary []string
	for _, w := range f.watchers {
		summary = append(summary, f.checkWatcher(t, w, feed, wantETag))
	}
	summary = append(summary, f.checkWebhook(t, feed, wantETag))
	f.checkStreamLogs(t)
	t.Logf("change feed: %d events after the position (%d of the load's writes), served %s after the load stopped, every consumer settled after %s; %s; %s",
		len(feed), wantN, served.Round(time.Millisecond), settled.Round(time.Millisecond), strings.Join(summary, "; "), expiries)
}

// checkAgainstLoad compares the feed with the load's record: the same
// changes, user by user, in the load's order, with the versions (etags) its
// calls were answered with where the event still carries the user. It
// returns each event's etag as the load saw it.
func (f *feedCheck) checkAgainstLoad(t *testing.T, feed []feedEvent, wantByUser map[string][]feedEvent, wantN int) map[string]string {
	t.Helper()
	gotByUser := map[string][]feedEvent{}
	for _, e := range feed {
		gotByUser[e.userID] = append(gotByUser[e.userID], e)
	}
	wantETag := map[string]string{}
	var bad int
	users := maps.Clone(gotByUser)
	maps.Copy(users, wantByUser)
	for _, u := range slices.Sorted(maps.Keys(users)) {
		got, want := gotByUser[u], wantByUser[u]
		same := len(got) == len(want)
		for i := range min(len(got), len(want)) {
			same = same && got[i].typ == want[i].typ && (got[i].etag == "" || got[i].etag == want[i].etag)
			wantETag[got[i].id] = want[i].etag
		}
		if !same {
			if bad++; bad <= 5 {
				t.Errorf("user %s: the feed has %v, the load made %v", u, got, want)
			}
		}
	}
	if bad > 0 || len(feed) != wantN {
		t.Errorf("ListUserEvents after the position: %d events, the load committed %d changes; %d users differ", len(feed), wantN, bad)
	}
	return wantETag
}

// sameEvents reports how got differs from the feed: events missing or
// repeated, events that are not the feed's, or another order; and events
// whose content is not the feed's (type, user, or a version other than the
// load's).
func sameEvents(got, feed []feedEvent, wantETag map[string]string) error {
	want := map[string]feedEvent{}
	for _, e := range feed {
		want[e.id] = e
	}
	seen := map[string]int{}
	var errs []error
	for i, e := range got {
		seen[e.id]++
		w, ok := want[e.id]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("event %v is not in the feed", e))
		case e.typ != w.typ || e.userID != w.userID || (e.etag != "" && e.etag != wantETag[e.id]):
			errs = append(errs, fmt.Errorf("event %v, the feed has %v and the load version %q", e, w, wantETag[e.id]))
		case seen[e.id] > 1:
			errs = append(errs, fmt.Errorf("event %v again (#%d)", e, i))
		case i < len(feed) && feed[i].id != e.id:
			errs = append(errs, fmt.Errorf("event #%d is %v, the feed's #%d is %v", i, e, i, feed[i]))
		}
		if len(errs) >= 5 {
			break
		}
	}
	var missing int
	for _, e := range feed {
		if seen[e.id] == 0 {
			missing++
		}
	}
	if missing > 0 {
		errs = append(errs, fmt.Errorf("%d of the feed's %d events missing", missing, len(feed)))
	}
	return errors.Join(errs...)
}

// checkWatcher: the watcher has the feed, and each of its streams but the
// last (which the test closed) was ended by usersd's shutdown. It returns
// a summary for the log.
func (f *feedCheck) checkWatcher(t *testing.T, w *watcher, feed []feedEvent, wantETag map[string]string) string {
	t.Helper()
	events, conns := w.got()
	if err := sameEvents(events, feed, wantETag); err != nil {
		t.Errorf("watcher %s: %v", w.name, err)
	}
	var perConn []string
	for i, cn := range conns {
		perConn = append(perConn, strconv.Itoa(cn.events))
		if last := i == len(conns)-1; !last && !errors.Is(cn.end, errServerEnded) {
			t.Errorf("watcher %s: stream %d (%s) ended by %v, want usersd's unavailable at shutdown", w.name, i+1, cn.reqID, cn.end)
		}
	}
	// The replica serving its first stream was restarted: it had to
	// reconnect.
	if len(conns) < 2 {
		t.Errorf("watcher %s: one stream for the whole rolling restart, which restarted every replica", w.name)
	}
	return fmt.Sprintf("%s %d events on %d streams (%s)", w.name, len(events), len(conns), strings.Join(perConn, "+"))
}

// checkWebhook: every delivery verifies, and the deliveries, first of each
// webhook-id kept, are the feed; the withheld event came again. It returns
// a summary for the log.
func (f *feedCheck) checkWebhook(t *testing.T, feed []feedEvent, wantETag map[string]string) string {
	t.Helper()
	deliveries, refused := f.hook.got()
	var events []feedEvent
	times := map[string]int{}
	var badSig int
	for _, d := range deliveries {
		e, err := verifyDelivery(f.key, d)
		if err != nil {
			if badSig++; badSig <= 5 {
				t.Errorf("webhook delivery: %v", err)
			}
			continue
		}
		if times[e.id]++; times[e.id] == 1 {
			events = append(events, e)
		}
	}
	if err := sameEvents(events, feed, wantETag); err != nil {
		t.Errorf("webhook, after removing repeated webhook-ids: %v", err)
	}
	if len(refused) == 0 {
		t.Errorf("webhook: the receiver refused no delivery, so no retry was seen")
	}
	for _, id := range refused {
		if times[id] < 2 {
			t.Errorf("webhook: the delivery of %s was answered 503, but it came %d times", id, times[id])
		}
	}
	var repeated int
	for _, n := range times {
		repeated += n - 1
	}
	return fmt.Sprintf("webhook %d deliveries, %d distinct events, all signed (%d repeated: %d refused by the receiver)", len(deliveries), len(events), repeated, len(refused))
}

// checkStreamExpiries: HAProxy serves the open streams from the streams
// backend and would leave each idle for longer than any timeout of its
// defaults. It returns a summary for the log.
func (f *feedCheck) checkStreamExpiries(t *testing.T) string {
	t.Helper()
	var exps []time.Duration
	var err error
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		exps, err = f.c.haproxy.streamExpiries("streams")
		if (err == nil && len(exps) == len(f.watchers)) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || len(exps) != len(f.watchers) {
		t.Errorf("HAProxy's streams backend serves %d streams (%v), want the %d watchers'", len(exps), err, len(f.watchers))
	}
	for _, d := range exps {
		if d >= 0 && d < minStreamExpiry {
			t.Errorf("HAProxy would cut an idle feed stream after %s, want no sooner than %s: %v", d, minStreamExpiry, exps)
			break
		}
	}
	return fmt.Sprintf("HAProxy's streams backend had the %d open streams, each to be left idle for %v", len(exps), exps)
}

// checkStreamLogs: every stream that usersd ended went to the streams
// backend, and none ended by one of HAProxy's timeouts (a termination
// state that begins with c or s). The streams the test closed are left
// out: HAProxy may see that a client left only when it next writes to it.
func (f *feedCheck) checkStreamLogs(t *testing.T) {
	t.Helper()
	var ids []string
	for _, w := range f.watchers {
		_, conns := w.got()
		for _, cn := range conns {
			if cn.end != nil {
				ids = append(ids, cn.reqID)
			}
		}
	}
	var logs map[string]reqLog
	var missing []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		logs = f.c.haproxy.logged("streams")
		missing = slices.DeleteFunc(slices.Clone(ids), func(id string) bool { _, ok := logs[id]; return ok })
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of the %d feed streams that usersd ended not logged on HAProxy's streams backend: %v", len(missing), len(ids), missing)
	}
	by := map[string]int{}
	for _, id := range ids {
		lg, ok := logs[id]
		if !ok {
			continue
		}
		by[lg.server]++
		if lg.term[0] == 'c' || lg.term[0] == 's' {
			t.Errorf("HAProxy cut a feed stream with a timeout: %s", lg.text)
		}
	}
	t.Logf("feed streams that usersd ended, through HAProxy's streams backend: %d, by replica %s", len(ids)-len(missing), loadtest.Counts(by))
}
