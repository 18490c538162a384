package users

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"time"

	"github.com/google/uuid"
)

// EventType is what happened to a user.
type EventType int16

// The event types, numbered as users.v1.UserEvent.Type.
const (
	EventCreated EventType = 1
	EventUpdated EventType = 2
	EventDeleted EventType = 3
)

// Cursor is a position in the change feed. Events are ordered by the id
// of the transaction that wrote them (Tx), then by their sequence number
// within the feed (Seq). The zero Cursor is before every event.
type Cursor struct {
	Tx  int64
	Seq int64
}

// Less reports whether c comes before d in the feed.
func (c Cursor) Less(d Cursor) bool { return c.Tx < d.Tx || c.Tx == d.Tx && c.Seq < d.Seq }

// IsZero reports whether c is the start of the feed.
func (c Cursor) IsZero() bool { return c == Cursor{} }

// Event is one change to one user, with the user as it was after the
// change: nil for EventDeleted and for the earlier events of a user that
// has since been erased.
type Event struct {
	Cursor     Cursor
	Type       EventType
	UserID     uuid.UUID
	User       *User
	OccurredAt time.Time
}

// Feed keeps the change feed: every change to a user, written in the
// transaction of the change. store.Users implements it on PostgreSQL and
// userstest.Memory in memory.
type Feed interface {
	// Events returns up to limit events after after, in feed order, and
	// the horizon (the newest event retention has deleted) as of the same
	// read. It returns only events that nothing still uncommitted can come
	// before, so a reader that continues from the last event it got never
	// misses one. An after older than the horizon is ErrCursorExpired; the
	// zero Cursor starts at the oldest event kept.
	Events(ctx context.Context, after Cursor, limit int) ([]Event, Cursor, error)
	// Head is the cursor of the newest event Events can return now (the
	// horizon when there is none).
	Head(ctx context.Context) (Cursor, error)
}

// ErrCursorExpired is a cursor older than the oldest event kept: the
// events after it are gone (EVENT_RETENTION).
var ErrCursorExpired = errors.New("the cursor is older than the oldest event kept: start again from \"0\"")

// Page sizes of ListUserEvents.
const (
	DefaultEventPageSize = 100
	MaxEventPageSize     = 1000
)

// Cursors are the transaction id and the sequence number, big-endian, and
// a check of both, base64url encoded. The check tells a cursor this
// service issued from a mistyped or invented one (it is no secret: cursors
// grant nothing). "0" is the start of the feed.
const startCursor = "0"

var cursorEncoding = base64.RawURLEncoding

// EncodeCursor is c as clients see it.
func EncodeCursor(c Cursor) string {
	if c.IsZero() {
		return startCursor
	}
	var b [20]byte
	binary.BigEndian.PutUint64(b[0:], uint64(c.Tx))
	binary.BigEndian.PutUint64(b[8:], uint64(c.Seq))
	binary.BigEndian.PutUint32(b[16:], cursorCheck(b[:16]))
	return cursorEncoding.EncodeToString(b[:])
}

func cursorCheck(b []byte) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte("usersd-cursor"))
	_, _ = h.Write(b)
	return h.Sum32()
}

// decodeCursor reads a cursor for field; ok is false for the empty string
// (which means "from now on").
func decodeCursor(field, s string) (c Cursor, ok bool, err error) {
	switch s {
	case "":
		return Cursor{}, false, nil
	case startCursor:
		return Cursor{}, true, nil
	}
	var b [20]byte
	if cursorEncoding.DecodedLen(len(s)) != len(b) {
		return Cursor{}, false, FieldErrorf(field, "is not a cursor this service issued")
	}
	if _, err := cursorEncoding.Strict().Decode(b[:], []byte(s)); err != nil || binary.BigEndian.Uint32(b[16:]) != cursorCheck(b[:16]) {
		return Cursor{}, false, FieldErrorf(field, "is not a cursor this service issued")
	}
	c = Cursor{Tx: int64(binary.BigEndian.Uint64(b[0:])), Seq: int64(binary.BigEndian.Uint64(b[8:]))}
	if c.Tx <= 0 || c.Seq <= 0 || EncodeCursor(c) != s {
		return Cursor{}, false, FieldErrorf(field, "is not a cursor this service issued")
	}
	return c, true, nil
}

// eventPageSize applies the default and the cap to a page size.
func eventPageSize(n int32) (int, error) {
	switch {
	case n < 0:
		return 0, FieldErrorf("page_size", "must not be negative")
	case n == 0:
		return DefaultEventPageSize, nil
	case n > MaxEventPageSize:
		return MaxEventPageSize, nil
	}
	return int(n), nil
}
