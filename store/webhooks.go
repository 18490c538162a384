package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/acme/usersd/users"
)

// webhooksLock serialises the creation of webhooks, so that two creates
// cannot both pass the count at MaxWebhooks - 1.
const webhooksLock = int64(0x776562686f6f6b73) // "webhooks"

// CreateWebhook stores a webhook whose deliveries start after the feed's
// current head.
func (s *Users) CreateWebhook(ctx context.Context, in users.NewWebhook) (users.Webhook, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return users.Webhook{}, fmt.Errorf("create webhook: %w", err)
	}
	w := users.Webhook{ID: id, URL: in.URL, Types: in.Types}
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT pg_advisory_xact_lock($1), (SELECT count(*) FROM webhooks)`, webhooksLock).Scan(nil, &n); err != nil {
			return err
		}
		if n >= users.MaxWebhooks {
			return users.ErrTooManyWebhooks
		}
		return tx.QueryRow(ctx, `
			INSERT INTO webhooks (id, url, types, secret, cursor_xid, cursor_seq)
			SELECT $1, $2, $3, $4, h.xid, h.seq FROM (`+headQuery+`) h
			RETURNING created_at`, pgUUID(id), in.URL, eventTypes(in.Types), in.Secret).Scan(&w.CreatedAt)
	})
	if err != nil {
		return users.Webhook{}, fmt.Errorf("create webhook: %w", err)
	}
	return w, nil
}

// ListWebhooks returns every webhook, oldest first.
func (s *Users) ListWebhooks(ctx context.Context) ([]users.Webhook, error) {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	defer conn.Release()
	rows, err := conn.Query(ctx, `SELECT id, url, types, created_at FROM webhooks ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", classify(ctx, err))
	}
	var out []users.Webhook
	var w users.Webhook
	var types []int16
	_, err = pgx.ForEachRow(rows, []any{(*pgUUID)(&w.ID), &w.URL, &types, &w.CreatedAt}, func() error {
		w.Types = fromEventTypes(types)
		out = append(out, w)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", classify(ctx, err))
	}
	return out, nil
}

// DeleteWebhook removes a webhook. Its delivery job, if one is queued,
// finds no webhook and ends.
func (s *Users) DeleteWebhook(ctx context.Context, id uuid.UUID) error {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("delete webhook: %w", err)
	}
	defer conn.Release()
	tag, err := conn.Exec(ctx, `DELETE FROM webhooks WHERE id = $1`, pgUUID(id))
	if err != nil {
		return fmt.Errorf("delete webhook: %w", classify(ctx, err))
	}
	if tag.RowsAffected() == 0 {
		return users.ErrWebhookNotFound
	}
	return nil
}

func eventTypes(ts []users.EventType) []int16 {
	out := make([]int16, len(ts))
	for i, t := range ts {
		out[i] = int16(t)
	}
	return out
}

func fromEventTypes(ts []int16) []users.EventType {
	var out []users.EventType
	for _, t := range ts {
		out = append(out, users.EventType(t))
	}
	return out
}

// WebhookTarget is what a delivery needs of a webhook.
type WebhookTarget struct {
	ID           uuid.UUID
	URL          string
	Types        []users.EventType // empty: every type
	Secret       []byte
	Cursor       users.Cursor // the last event acknowledged or given up on
	Failures     int          // failed attempts at the event after Cursor
	FailingSince time.Time    // the first of them; zero without failures
}

// Wants reports whether the webhook receives events of type t.
func (w WebhookTarget) Wants(t users.EventType) bool {
	return len(w.Types) == 0 || slices.Contains(w.Types, t)
}

// WebhookBacklog returns webhook id and up to limit events after its
// cursor; users.ErrWebhookNotFound when it has been deleted, and
// users.ErrCursorExpired (with the target) when retention removed events
// it had not received.
func (s *Users) WebhookBacklog(ctx context.Context, id uuid.UUID, limit int) (WebhookTarget, []users.Event, error) {
	w := WebhookTarget{ID: id}
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return w, nil, fmt.Errorf("read webhook: %w", err)
	}
	defer conn.Release()
	var types []int16
	var since pgtype.Timestamptz
	err = conn.QueryRow(ctx, `
		SELECT url, types, secret, cursor_xid, cursor_seq, failures, failing_since FROM webhooks WHERE id = $1`, pgUUID(id),
	).Scan(&w.URL, &types, &w.Secret, &w.Cursor.Tx, &w.Cursor.Seq, &w.Failures, &since)
	if err == pgx.ErrNoRows {
		return w, nil, users.ErrWebhookNotFound
	}
	if err != nil {
		return w, nil, fmt.Errorf("read webhook: %w", classify(ctx, err))
	}
	w.Types, w.FailingSince = fromEventTypes(types), since.Time
	// On the primary, like the job's other reads and writes.
	events, horizon, err := readEvents(ctx, conn, w.Cursor, limit)
	if err == nil && w.Cursor.Less(horizon) {
		err = users.ErrCursorExpired
	}
	return w, events, err
}

// AdvanceWebhook records that webhook id is done with the events up to
// to (acknowledged, skipped by type, or given up on), and clears its
// failures. lastError, when set, says why an event was given up.
func (s *Users) AdvanceWebhook(ctx context.Context, id uuid.UUID, to users.Cursor, lastError string) error {
	return s.execWebhook(ctx, `
		UPDATE webhooks SET cursor_xid = $2, cursor_seq = $3, failures = 0, failing_since = NULL,
		       last_error = coalesce(nullif($4, ''), last_error)
		 WHERE id = $1 AND (cursor_xid, cursor_seq) < ($2, $3)`, pgUUID(id), to.Tx, to.Seq, lastError)
}

// WebhookFailed records a failed attempt at webhook id's next event.
func (s *Users) WebhookFailed(ctx context.Context, id uuid.UUID, lastError string) error {
	return s.execWebhook(ctx, `
		UPDATE webhooks SET failures = failures + 1, failing_since = coalesce(failing_since, now()), last_error = $2
		 WHERE id = $1`, pgUUID(id), lastError)
}

// SkipToHorizon moves webhook id's cursor to the horizon: the events it
// had not received are gone.
func (s *Users) SkipToHorizon(ctx context.Context, id uuid.UUID) error {
	return s.execWebhook(ctx, `
		UPDATE webhooks w SET cursor_xid = h.xid, cursor_seq = h.seq, failures = 0, failing_since = NULL,
		       last_error = 'events expired before delivery'
		  FROM user_event_horizon h
		 WHERE w.id = $1 AND (w.cursor_xid, w.cursor_seq) < (h.xid, h.seq)`, pgUUID(id))
}

func (s *Users) execWebhook(ctx context.Context, sql string, args ...any) error {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("update webhook: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("update webhook: %w", classify(ctx, err))
	}
	return nil
}

// WebhooksBehind returns the webhooks with servable events they have not
// received.
func (s *Users) WebhooksBehind(ctx context.Context) ([]uuid.UUID, error) {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("webhooks behind: %w", err)
	}
	defer conn.Release()
	rows, err := conn.Query(ctx, `
		SELECT w.id FROM webhooks w
		 WHERE EXISTS (SELECT 1 FROM user_events e
		                WHERE (e.xid, e.seq) > (w.cursor_xid, w.cursor_seq) AND e.`+servable+`)`)
	if err != nil {
		return nil, fmt.Errorf("webhooks behind: %w", classify(ctx, err))
	}
	var ids []uuid.UUID
	var id uuid.UUID
	_, err = pgx.ForEachRow(rows, []any{(*pgUUID)(&id)}, func() error { ids = append(ids, id); return nil })
	if err != nil {
		return nil, fmt.Errorf("webhooks behind: %w", classify(ctx, err))
	}
	return ids, nil
}
