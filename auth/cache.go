package auth

import (
	"sync"
	"time"

	"github.com/acme/usersd/users"
)

// Bounds of the verified-token cache.
const (
	cacheMaxEntries  = 10000
	cacheMaxTokenLen = 4096 // longer tokens are verified every time, not kept
)

// tokenCache remembers tokens that passed verification until they expire, so
// a client that reuses its token costs a map lookup instead of a signature
// check. Only verified tokens go in; a failed token is never remembered.
type tokenCache struct {
	mu      sync.RWMutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	p     *users.Principal
	until time.Time // the token's exp plus the leeway
}

func newTokenCache() *tokenCache {
	return &tokenCache{entries: make(map[string]cacheEntry)}
}

func (c *tokenCache) get(token string, now time.Time) (*users.Principal, bool) {
	c.mu.RLock()
	e, ok := c.entries[token]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return nil, false
	}
	return e.p, true
}

func (c *tokenCache) put(token string, p *users.Principal, until time.Time, now time.Time) {
	if len(token) > cacheMaxTokenLen {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= cacheMaxEntries {
		c.evict(now)
	}
	c.entries[token] = cacheEntry{p: p, until: until}
}

// evict drops expired entries and, if the cache is still full, an eighth of
// the rest (map order is random, so the victims are too).
func (c *tokenCache) evict(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.until) {
			delete(c.entries, k)
		}
	}
	drop := len(c.entries) - cacheMaxEntries*7/8
	for k := range c.entries {
		if drop <= 0 {
			break
		}
		delete(c.entries, k)
		drop--
	}
}

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
