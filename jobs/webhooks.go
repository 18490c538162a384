package jobs

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/restjson"
	"github.com/acme/usersd/store"
	"github.com/acme/usersd/users"
)

// Delivery of the change feed to webhooks. Each webhook has at most one
// delivery job at a time (River's unique jobs), which sends its events in
// feed order and records each acknowledged one in the webhook's cursor, so
// one slow or dead endpoint delays only itself. A failed attempt snoozes
// the job: the first retry comes within 10 s, then the wait doubles up to
// an hour; an event that has failed for 24 hours is given up (recorded in
// last_error) and the next one is tried.

// Timing of deliveries.
const (
	DeliveryTimeout    = 10 * time.Second // one POST, answer included
	DefaultFirstRetry  = 5 * time.Second
	maxRetry           = time.Hour
	DefaultGiveUpAfter = 24 * time.Hour
	deliveryBatch      = 100              // events read per query
	jobBudget          = 30 * time.Second // then the job ends, and the dispatcher queues the next
)

// WebhookArgs is the webhook_delivery job: send webhook WebhookID its
// events.
type WebhookArgs struct {
	WebhookID uuid.UUID `json:"webhook_id"`
}

// Kind is the job kind stored in river_job.
func (WebhookArgs) Kind() string { return "webhook_delivery" }

// InsertOpts make the job unique per webhook while it waits, runs or
// snoozes.
func (WebhookArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning, rivertype.JobStateRetryable, rivertype.JobStateScheduled,
	}}}
}

// WebhookWorker delivers one webhook's events.
type WebhookWorker struct {
	river.WorkerDefaults[WebhookArgs]
	Users       *store.Users
	Client      *http.Client // NewWebhookClient
	Log         *slog.Logger
	FirstRetry  time.Duration // wait after the first failure; 0: DefaultFirstRetry
	GiveUpAfter time.Duration // how long an event may fail; 0: DefaultGiveUpAfter
}

// Timeout bounds one run: its budget and one last delivery.
func (w *WebhookWorker) Timeout(*river.Job[WebhookArgs]) time.Duration {
	return jobBudget + DeliveryTimeout + 5*time.Second
}

// NextRetry is for errors of the storage, not of the endpoint (those
// snooze): soon.
func (w *WebhookWorker) NextRetry(*river.Job[WebhookArgs]) time.Time {
	return time.Now().Add(cmp.Or(w.FirstRetry, DefaultFirstRetry))
}

// Work sends the webhook's events in order until it has none left, its
// budget is spent, or its endpoint fails.
func (w *WebhookWorker) Work(ctx context.Context, job *river.Job[WebhookArgs]) error {
	id := job.Args.WebhookID
	deadline := time.Now().Add(jobBudget)
	for time.Now().Before(deadline) {
		target, events, err := w.Users.WebhookBacklog(ctx, id, deliveryBatch)
		switch {
		case errors.Is(err, users.ErrWebhookNotFound):
			return nil // deleted meanwhile
		case errors.Is(err, users.ErrCursorExpired):
			w.Log.WarnContext(ctx, "webhook missed events that retention removed before delivery", "webhook_id", id)
			if err := w.Users.SkipToHorizon(ctx, id); err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		case len(events) == 0:
			return nil
		}
		for _, e := range events {
			if !target.Wants(e.Type) {
				if err := w.Users.AdvanceWebhook(ctx, id, e.Cursor, ""); err != nil {
					return err
				}
				continue
			}
			derr := Deliver(ctx, w.Client, target.URL, target.Secret, users.EventToProto(e), time.Now())
			if derr == nil {
				if err := w.Users.AdvanceWebhook(ctx, id, e.Cursor, ""); err != nil {
					return err
				}
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err() // stopping: River retries the job
			}
			if !target.FailingSince.IsZero() && time.Since(target.FailingSince) >= cmp.Or(w.GiveUpAfter, DefaultGiveUpAfter) {
				w.Log.WarnContext(ctx, "webhook delivery given up", "webhook_id", id, "event_id", users.EncodeCursor(e.Cursor), "failures", target.Failures+1, "err", derr)
				if err := w.Users.AdvanceWebhook(ctx, id, e.Cursor, "given up: "+derr.Error()); err != nil {
					return err
				}
				continue
			}
			if err := w.Users.WebhookFailed(ctx, id, derr.Error()); err != nil {
				return err
			}
			wait := retryAfter(cmp.Or(w.FirstRetry, DefaultFirstRetry), target.Failures+1)
			w.Log.InfoContext(ctx, "webhook delivery failed; retrying", "webhook_id", id, "event_id", users.EncodeCursor(e.Cursor), "failures", target.Failures+1, "retry_in", wait, "err", derr)
			return river.JobSnooze(wait)
		}
	}
	return nil
}

// retryAfter is the wait after the nth failure in a row: first, then
// twice as long each time, at most an hour.
func retryAfter(first time.Duration, n int) time.Duration {
	d := first
	for i := 1; i < n && d < maxRetry; i++ {
		d *= 2
	}
	return min(d, maxRetry)
}

// Deliver POSTs event e to url, signed as the Standard Webhooks
// specification says: webhook-id (the event id), webhook-timestamp (Unix
// seconds) and webhook-signature ("v1," and the base64 HMAC-SHA256 of
// "id.timestamp.body" keyed with key). A 2xx answer within
// DeliveryTimeout acknowledges it; anything else is an error.
func Deliver(ctx context.Context, client *http.Client, url string, key []byte, ev *usersv1.UserEvent, now time.Time) error {
	body, err := restjson.MarshalEvent(ev)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, DeliveryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "usersd-webhooks")
	req.Header.Set("webhook-id", ev.Id)
	req.Header.Set("webhook-timestamp", ts)
	req.Header.Set("webhook-signature", "v1,"+Sign(key, ev.Id, ts, body))
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("POST: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("POST answered %s", resp.Status)
	}
	return nil
}

// Sign is the Standard Webhooks signature of one delivery, base64.
func Sign(key []byte, id, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + timestamp + "."))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// NewWebhookClient is the HTTP client of deliveries. It follows no
// redirects and uses no proxy, and unless allowPrivate it connects only
// to public addresses: the address is checked as the connection is made,
// after DNS, so a name that resolves to a private address (or rebinds to
// one) is refused too.
func NewWebhookClient(allowPrivate bool) *http.Client {
	dialer := &net.Dialer{Timeout: DeliveryTimeout}
	if !allowPrivate {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !users.PublicAddr(ap.Addr()) {
				return fmt.Errorf("%w: %s", errPrivateAddress, address)
			}
			return nil
		}
	}
	return &http.Client{
		Timeout: DeliveryTimeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         dialer.DialContext,
			TLSHandshakeTimeout: DeliveryTimeout,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

var errPrivateAddress = errors.New("webhook address is loopback, private or link-local (WEBHOOK_ALLOW_PRIVATE=true allows it)")

// WebhookDispatcher queues a delivery job for every webhook that has
// events to receive, every interval, in every usersd that works jobs.
// The jobs are unique per webhook, so replicas doing the same is harmless.
type WebhookDispatcher struct {
	Users    *store.Users
	River    *river.Client[pgx.Tx]
	Interval time.Duration
	Log      *slog.Logger
}

// Run dispatches until ctx ends.
func (d *WebhookDispatcher) Run(ctx context.Context) {
	t := time.NewTicker(d.Interval)
	defer t.Stop()
	for {
		if err := d.dispatch(ctx); err != nil && ctx.Err() == nil {
			d.Log.WarnContext(ctx, "webhook dispatch", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *WebhookDispatcher) dispatch(ctx context.Context) error {
	ids, err := d.Users.WebhooksBehind(ctx)
	if err != nil || len(ids) == 0 {
		return err
	}
	params := make([]river.InsertManyParams, len(ids))
	for i, id := range ids {
		params[i] = river.InsertManyParams{Args: WebhookArgs{WebhookID: id}}
	}
	_, err = d.River.InsertMany(ctx, params)
	return err
}
