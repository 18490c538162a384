package store

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/acme/usersd/users"
)

// servable is the condition on user_events that makes the feed gap-free:
// only rows of transactions older than every transaction still running,
// which no new row can precede. (A transaction gets its xid when it first
// writes, from a counter, so every later one has a larger xid.)
const servable = `xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint`

// Events returns up to limit servable events after after, in feed order,
// and ErrCursorExpired when after is older than the horizon. One query: the
// horizon comes with the page.
func (s *Users) Events(ctx context.Context, after users.Cursor, limit int) ([]users.Event, users.Cursor, error) {
	var events []users.Event
	var horizon users.Cursor
	err := s.read(ctx, func(q querier) error {
		var err error
		events, horizon, err = readEvents(ctx, q, after, limit)
		return err
	})
	if err != nil {
		return nil, horizon, fmt.Errorf("read events: %w", err)
	}
	if !after.IsZero() && after.Less(horizon) {
		return nil, horizon, users.ErrCursorExpired
	}
	return events, horizon, nil
}

// readEvents is one page of Events on q. A replica serves a prefix of the
// feed as the primary had it, so a reader moving between them never skips.
func readEvents(ctx context.Context, q querier, after users.Cursor, limit int) ([]users.Event, users.Cursor, error) {
	var horizon users.Cursor
	rows, err := q.Query(ctx, `
		SELECT h.xid, h.seq, e.xid, e.seq, e.type, e.user_id, e.email, e.full_name, e.created_at, e.updated_at, e.version, e.erased, e.occurred_at
		  FROM user_event_horizon h
		  LEFT JOIN LATERAL (
		        SELECT * FROM user_events
		         WHERE (xid, seq) > ($1, $2) AND `+servable+`
		         ORDER BY xid, seq LIMIT $3) e ON true`, after.Tx, after.Seq, limit)
	if err != nil {
		return nil, horizon, classify(ctx, err)
	}
	// The horizon is on every row; without events there is one row, with
	// the event's columns NULL.
	var (
		xid, seq         pgtype.Int8
		typ              pgtype.Int2
		id               nullUUID
		email, name      pgtype.Text
		created, updated pgtype.Timestamptz
		version          pgtype.Int8
		erased           pgtype.Bool
		occurred         pgtype.Timestamptz
	)
	events := make([]users.Event, 0, min(limit, 64))
	_, err = pgx.ForEachRow(rows, []any{&horizon.Tx, &horizon.Seq, &xid, &seq, &typ, &id, &email, &name, &created, &updated, &version, &erased, &occurred}, func() error {
		if !xid.Valid {
			return nil
		}
		e := users.Event{Cursor: users.Cursor{Tx: xid.Int64, Seq: seq.Int64}, Type: users.EventType(typ.Int16), UserID: uuid.UUID(id), OccurredAt: occurred.Time}
		if !erased.Bool && e.Type != users.EventDeleted {
			e.User = &users.User{ID: e.UserID, Email: email.String, FullName: name.String, CreatedAt: created.Time, UpdatedAt: updated.Time, Version: version.Int64}
		}
		events = append(events, e)
		return nil
	})
	return events, horizon, classify(ctx, err)
}

// headQuery is the feed's head: the newest servable event, or the horizon
// when there is none.
const headQuery = `
	SELECT xid, seq FROM (
	        (SELECT xid, seq FROM user_events WHERE ` + servable + ` ORDER BY xid DESC, seq DESC LIMIT 1)
	        UNION ALL
	        SELECT xid, seq FROM user_event_horizon) h
	 ORDER BY xid DESC, seq DESC LIMIT 1`

// Head is the cursor of the newest servable event, or the horizon when
// there is none.
func (s *Users) Head(ctx context.Context) (users.Cursor, error) {
	var c users.Cursor
	err := s.read(ctx, func(q querier) error {
		return classify(ctx, q.QueryRow(ctx, headQuery).Scan(&c.Tx, &c.Seq))
	})
	if err != nil {
		return users.Cursor{}, fmt.Errorf("read the feed's head: %w", err)
	}
	return c, nil
}

// ExpireEvents deletes the events that occurred before before and moves
// the horizon to the newest of them. It deletes only a prefix of the feed,
// up to the first event that is younger (or not servable yet), so that
// every event at or before the horizon is gone and every one after it is
// kept; an old event behind a younger one goes on a later run.
func (s *Users) ExpireEvents(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		stop := users.Cursor{Tx: math.MaxInt64, Seq: math.MaxInt64}
		err := tx.QueryRow(ctx, `
			SELECT xid, seq FROM user_events
			 WHERE occurred_at >= $1 OR NOT (`+servable+`)
			 ORDER BY xid, seq LIMIT 1`, before).Scan(&stop.Tx, &stop.Seq)
		if err != nil && err != pgx.ErrNoRows {
			return err
		}
		return tx.QueryRow(ctx, `
			WITH del AS (
			        DELETE FROM user_events WHERE (xid, seq) < ($1, $2) AND occurred_at < $3 AND `+servable+`
			        RETURNING xid, seq),
			     last AS (SELECT xid, seq FROM del ORDER BY xid DESC, seq DESC LIMIT 1),
			     moved AS (
			        UPDATE user_event_horizon h SET xid = last.xid, seq = last.seq FROM last
			         WHERE (last.xid, last.seq) > (h.xid, h.seq))
			SELECT count(*) FROM del`, stop.Tx, stop.Seq, before).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("expire events: %w", err)
	}
	return n, nil
}

// nullUUID scans a uuid that may be NULL (the lateral join's empty row)
// as the nil UUID.
type nullUUID uuid.UUID

// ScanUUID implements pgtype.UUIDScanner.
func (u *nullUUID) ScanUUID(v pgtype.UUID) error {
	if v.Valid {
		*u = v.Bytes
	} else {
		*u = nullUUID{}
	}
	return nil
}
