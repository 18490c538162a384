// Package userstest has an in-memory users.Storage for fast tests of the
// domain and the transports, and the contract that every Storage, the
// PostgreSQL one included, must keep (TestStorage). The fake speeds tests
// up; it never stands in for the real-database tests.
package userstest

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/acme/usersd/users"
)

// Memory is a users.Storage in maps, safe for concurrent use. Every
// change is its own transaction: its event's cursor is {n, n}. Its zero
// value is empty and ready.
type Memory struct {
	mu       sync.Mutex
	users    map[uuid.UUID]users.User
	events   []users.Event // in feed order
	seq      int64
	horizon  users.Cursor
	webhooks []users.Webhook
}

var _ users.Storage = (*Memory)(nil)

// NewMemory returns an empty Memory.
func NewMemory() *Memory { return &Memory{} }

func (m *Memory) Create(ctx context.Context, in users.NewUser) (users.User, error) {
	if err := ctx.Err(); err != nil {
		return users.User{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range m.users {
		if strings.EqualFold(u.Email, in.Email) {
			return users.User{}, users.ErrEmailTaken
		}
		if in.Subject != "" && u.Subject == in.Subject {
			return users.User{}, users.ErrSubjectTaken
		}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return users.User{}, err
	}
	now := time.Now().UTC().Truncate(time.Microsecond) // PostgreSQL's precision
	u := users.User{ID: id, Email: in.Email, FullName: in.FullName, Subject: in.Subject, CreatedAt: now, UpdatedAt: now, Version: 1}
	if m.users == nil {
		m.users = make(map[uuid.UUID]users.User)
	}
	m.users[id] = u
	m.addEvent(ctx, users.EventCreated, u)
	return u, nil
}

// addEvent appends the event of a change to u, which names the change's
// position too. m.mu held.
func (m *Memory) addEvent(ctx context.Context, t users.EventType, u users.User) {
	m.seq++
	users.NoteWrite(ctx, uint64(m.seq))
	e := users.Event{Cursor: users.Cursor{Tx: m.seq, Seq: m.seq}, Type: t, UserID: u.ID, OccurredAt: time.Now().UTC()}
	if t != users.EventDeleted {
		e.User = &u
	}
	m.events = append(m.events, e)
}

func (m *Memory) Get(ctx context.Context, id uuid.UUID) (users.User, error) {
	if err := ctx.Err(); err != nil {
		return users.User{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[id]
	if !ok {
		return users.User{}, users.ErrNotFound
	}
	return u, nil
}

func (m *Memory) List(ctx context.Context, before uuid.UUID, limit int) ([]users.User, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	m.mu.Lock()
	all := make([]users.User, 0, len(m.users))
	for _, u := range m.users {
		if before == uuid.Nil || bytes.Compare(u.ID[:], before[:]) < 0 {
			all = append(all, u)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(all, func(a, b users.User) int { return bytes.Compare(b.ID[:], a.ID[:]) })
	if len(all) > limit {
		return all[:limit], true, nil
	}
	return all, false, nil
}

func (m *Memory) FindByEmail(ctx context.Context, email string) (users.User, error) {
	if err := ctx.Err(); err != nil {
		return users.User{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range m.users {
		if strings.EqualFold(u.Email, email) {
			return u, nil
		}
	}
	return users.User{}, users.ErrNotFound
}

func (m *Memory) Update(ctx context.Context, id uuid.UUID, p users.Patch, g users.Guard) (users.User, error) {
	if err := ctx.Err(); err != nil {
		return users.User{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	u, err := m.guarded(id, g)
	if err != nil {
		return users.User{}, err
	}
	if p.Email != nil {
		for other, o := range m.users {
			if other != id && strings.EqualFold(o.Email, *p.Email) {
				return users.User{}, users.ErrEmailTaken
			}
		}
		u.Email = *p.Email
	}
	if p.FullName != nil {
		u.FullName = *p.FullName
	}
	u.Version++
	// Later than any earlier version, as PostgreSQL's clock is between
	// two transactions.
	now := time.Now().UTC().Truncate(time.Microsecond)
	if !now.After(u.UpdatedAt) {
		now = u.UpdatedAt.Add(time.Microsecond)
	}
	u.UpdatedAt = now
	m.users[id] = u
	m.addEvent(ctx, users.EventUpdated, u)
	return u, nil
}

func (m *Memory) Delete(ctx context.Context, id uuid.UUID, g users.Guard) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	u, err := m.guarded(id, g)
	if err != nil {
		return err
	}
	delete(m.users, id)
	for i := range m.events {
		if m.events[i].UserID == id {
			m.events[i].User = nil // erased
		}
	}
	m.addEvent(ctx, users.EventDeleted, u)
	return nil
}

// guarded returns user id if g holds, with the error the contract names
// when it does not. m.mu held.
func (m *Memory) guarded(id uuid.UUID, g users.Guard) (users.User, error) {
	u, ok := m.users[id]
	switch {
	case !ok:
		return u, users.ErrNotFound
	case g.Subject != "" && u.Subject != g.Subject:
		return u, users.ErrNotOwner
	case g.Version != 0 && u.Version != g.Version:
		return u, users.ErrStale
	}
	return u, nil
}

func (m *Memory) Events(ctx context.Context, after users.Cursor, limit int) ([]users.Event, users.Cursor, error) {
	if err := ctx.Err(); err != nil {
		return nil, users.Cursor{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !after.IsZero() && after.Less(m.horizon) {
		return nil, m.horizon, users.ErrCursorExpired
	}
	var out []users.Event
	for _, e := range m.events {
		if after.Less(e.Cursor) && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, m.horizon, nil
}

func (m *Memory) Head(ctx context.Context) (users.Cursor, error) {
	if err := ctx.Err(); err != nil {
		return users.Cursor{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.events) == 0 {
		return m.horizon, nil
	}
	return m.events[len(m.events)-1].Cursor, nil
}

// ExpireEvents forgets the events that occurred before before, as
// retention does, and returns how many.
func (m *Memory) ExpireEvents(ctx context.Context, before time.Time) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(m.events)
	for len(m.events) > 0 && m.events[0].OccurredAt.Before(before) {
		m.horizon = m.events[0].Cursor
		m.events = m.events[1:]
	}
	return int64(n - len(m.events)), nil
}

func (m *Memory) CreateWebhook(ctx context.Context, in users.NewWebhook) (users.Webhook, error) {
	if err := ctx.Err(); err != nil {
		return users.Webhook{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.webhooks) >= users.MaxWebhooks {
		return users.Webhook{}, users.ErrTooManyWebhooks
	}
	w := users.Webhook{ID: uuid.Must(uuid.NewV7()), URL: in.URL, Types: slices.Clone(in.Types), CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
	m.webhooks = append(m.webhooks, w)
	return w, nil
}

func (m *Memory) ListWebhooks(ctx context.Context) ([]users.Webhook, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.webhooks), nil
}

func (m *Memory) DeleteWebhook(ctx context.Context, id uuid.UUID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(m.webhooks)
	m.webhooks = slices.DeleteFunc(m.webhooks, func(w users.Webhook) bool { return w.ID == id })
	if len(m.webhooks) == n {
		return users.ErrWebhookNotFound
	}
	return nil
}
