package users

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// hub tails the feed for every watcher of this process: one query per
// wake-up, however many watch. It polls only while someone watches, every
// interval, and at once when this process has written (Poke). A watcher
// that falls behind is not waited for: its batches are dropped and it
// catches up from the storage itself, so one slow client costs the others
// nothing and memory stays bounded.
type hub struct {
	feed     Feed
	interval time.Duration
	poke     chan struct{}
	closed   chan struct{}
	closeOne sync.Once

	mu      sync.Mutex
	subs    map[*subscription]struct{}
	running bool
}

// batch is what one poll found: the events after from, up to to.
type batch struct {
	from, to Cursor
	events   []Event
}

// subscription is one watcher's feed from the hub.
type subscription struct {
	c      chan batch
	lagged atomic.Bool // batches were dropped: catch up from the storage
}

// subscriptionBuffer is how many batches a watcher may have unread before
// the hub drops the next ones for it.
const subscriptionBuffer = 16

// hubPage is the largest batch of one poll; a full one is followed by
// another poll at once.
const hubPage = MaxEventPageSize

// ErrShuttingDown ends every watch when the service stops.
var ErrShuttingDown = errors.New("the server is shutting down: reconnect with the id of the last event received")

func newHub(feed Feed, interval time.Duration) *hub {
	return &hub{feed: feed, interval: interval, poke: make(chan struct{}, 1), closed: make(chan struct{}), subs: make(map[*subscription]struct{})}
}

// subscribe starts a subscription, and the hub's polling if it is idle.
func (h *hub) subscribe() *subscription {
	s := &subscription{c: make(chan batch, subscriptionBuffer)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	start := !h.running
	h.running = true
	h.mu.Unlock()
	if start {
		go h.run()
	}
	return s
}

func (h *hub) unsubscribe(s *subscription) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// Poke makes the hub poll now: this process has just written.
func (h *hub) Poke() {
	select {
	case h.poke <- struct{}{}:
	default:
	}
}

// close ends every watch and stops polling for good.
func (h *hub) close() { h.closeOne.Do(func() { close(h.closed) }) }

// run polls until nobody watches or the hub closes.
func (h *hub) run() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-h.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	head, err := h.feed.Head(ctx)
	for err != nil {
		// The storage cannot be reached: keep trying while anyone watches.
		if !h.wait(ctx) {
			return
		}
		head, err = h.feed.Head(ctx)
	}
	// The hub starts at the end of the feed, which may be past where a
	// watcher's own catch-up ended: tell everyone where it starts, so that
	// such a watcher reads the gap itself.
	h.broadcast(batch{from: head, to: head})
	for {
		events, _, err := h.feed.Events(ctx, head, hubPage)
		switch {
		case errors.Is(err, ErrCursorExpired):
			// Nobody polled for longer than the retention: start at the
			// end; the watchers see the gap and catch up (and fail) alone.
			if end, err := h.feed.Head(ctx); err == nil {
				head = end
				h.broadcast(batch{from: head, to: head})
			}
		case err == nil && len(events) > 0:
			b := batch{from: head, to: events[len(events)-1].Cursor, events: events}
			head = b.to
			h.broadcast(b)
			if len(events) == hubPage {
				continue
			}
		}
		if !h.wait(ctx) {
			return
		}
	}
}

// wait sleeps until the next poll; false means stop: nobody watches, or
// the hub closed.
func (h *hub) wait(ctx context.Context) bool {
	t := time.NewTimer(h.interval)
	defer t.Stop()
	select {
	case <-t.C:
	case <-h.poke:
	case <-ctx.Done():
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) == 0 {
		h.running = false
		return false
	}
	return true
}

func (h *hub) broadcast(b batch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.c <- b:
		default:
			s.lagged.Store(true)
		}
	}
}
