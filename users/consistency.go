package users

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"hash/fnv"
	"sync/atomic"
)

// A Token names a position in the storage's history: the commit of a
// write (PostgreSQL's WAL position). Every write answers with one, and a
// read given one is answered only from data at least that new, so a client
// that sends back the token of its last write reads its own writes, even
// from read replicas. Clients treat it as opaque.
type Token struct{ pos uint64 }

// TokenAt is the token of position pos (a WAL LSN).
func TokenAt(pos uint64) Token { return Token{pos} }

// Pos is the position the token names; 0 for the zero Token (no token).
func (t Token) Pos() uint64 { return t.pos }

// Tokens are the position and a check of it, base64url: the check tells a
// token this service issued from a mangled one.
func (t Token) String() string {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:], t.pos)
	binary.BigEndian.PutUint32(b[8:], tokenCheck(b[:8]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func tokenCheck(b []byte) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte("usersd-consistency"))
	_, _ = h.Write(b)
	return h.Sum32()
}

// ParseToken reads a token as String writes it; anything else is a
// FieldError on field (the header's name).
func ParseToken(field, s string) (Token, error) {
	var b [12]byte
	if base64.RawURLEncoding.DecodedLen(len(s)) != len(b) {
		return Token{}, FieldErrorf(field, "is not a consistency token this service issued")
	}
	if _, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(s)); err != nil ||
		binary.BigEndian.Uint32(b[8:]) != tokenCheck(b[:8]) || binary.BigEndian.Uint64(b[:8]) == 0 {
		return Token{}, FieldErrorf(field, "is not a consistency token this service issued")
	}
	return Token{binary.BigEndian.Uint64(b[:8])}, nil
}

type (
	readAfterKey struct{}
	writesKey    struct{}
)

// ReadAfter returns ctx whose reads must see at least position t.
func ReadAfter(ctx context.Context, t Token) context.Context {
	return context.WithValue(ctx, readAfterKey{}, t)
}

// ReadAfterOf is the position ctx's reads must see; the zero Token when
// any recent data will do.
func ReadAfterOf(ctx context.Context) Token {
	t, _ := ctx.Value(readAfterKey{}).(Token)
	return t
}

// Writes collects the positions of the writes made with a context, so
// that the transport can answer with the token of the newest. A write
// group-committed with others may note its position after its caller has
// given up, hence the atomic.
type Writes struct{ newest atomic.Uint64 }

// Token is the newest write's token; the zero Token when nothing was
// written.
func (w *Writes) Token() Token { return Token{w.newest.Load()} }

// RecordWrites returns ctx that collects its writes' positions in w.
func RecordWrites(ctx context.Context) (context.Context, *Writes) {
	w := &Writes{}
	return context.WithValue(ctx, writesKey{}, w), w
}

// NoteWrite is the storage telling that a write made with ctx committed at
// position pos.
func NoteWrite(ctx context.Context, pos uint64) {
	w, ok := ctx.Value(writesKey{}).(*Writes)
	for ok {
		old := w.newest.Load()
		if pos <= old || w.newest.CompareAndSwap(old, pos) {
			return
		}
	}
}
