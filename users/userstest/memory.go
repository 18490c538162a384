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

// Memory is a users.Storage in a map, safe for concurrent use. Its zero
// value is empty and ready.
type Memory struct {
	mu    sync.Mutex
	users map[uuid.UUID]users.User
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
	return u, nil
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
	return u, nil
}

func (m *Memory) Delete(ctx context.Context, id uuid.UUID, g users.Guard) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.guarded(id, g); err != nil {
		return err
	}
	delete(m.users, id)
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
