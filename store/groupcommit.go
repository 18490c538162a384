package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// groupCommit gathers concurrent calls into batches without waiting for a
// timer: a call that finds a free slot starts a batch at once with whatever
// is pending, and calls that arrive while every slot is busy form the next
// batches, at most max calls each, taken in arrival order.
type groupCommit[T, R any] struct {
	max   int
	slots int
	run   func(batch []*call[T, R]) // sets every call's Out or Err; finish delivers them

	mu       sync.Mutex
	pending  []*call[T, R]
	inFlight int
}

// call is one caller's request in a batch.
type call[T, R any] struct {
	Ctx context.Context // the caller's; the batch must not stop when it ends
	In  T
	Out R
	Err error

	state atomic.Int32 // waiting, taken or abandoned
	done  chan struct{}
}

const (
	waiting   int32 = iota
	taken           // in a batch: its outcome will be delivered
	abandoned       // its caller gave up before a batch took it: never run
)

// errWaitedTooLong is a call no batch took within the wait its caller
// allowed, because every slot stayed busy.
var errWaitedTooLong = errors.New("no batch slot became free in time")

func newGroupCommit[T, R any](max, slots int, run func([]*call[T, R])) *groupCommit[T, R] {
	return &groupCommit[T, R]{max: max, slots: slots, run: run}
}

// do runs in through a batch and returns its outcome. It returns early
// with ctx's error when ctx ends: a call no batch has taken yet is then
// never run, one already taken runs to the end without its caller. A call
// that waits longer than maxWait for a slot is errWaitedTooLong.
func (g *groupCommit[T, R]) do(ctx context.Context, in T, maxWait time.Duration) (R, error) {
	var zero R
	// A call whose caller has already gone is never run: with a free slot
	// enqueue would take it into a batch at once, before the select below
	// could see ctx ended.
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	c := &call[T, R]{Ctx: ctx, In: in, done: make(chan struct{})}
	g.enqueue(c)
	timer := time.NewTimer(maxWait)
	defer timer.Stop()
	for {
		select {
		case <-c.done:
			return c.Out, c.Err
		case <-ctx.Done():
			c.state.CompareAndSwap(waiting, abandoned)
			return zero, ctx.Err()
		case <-timer.C:
			if c.state.CompareAndSwap(waiting, abandoned) {
				return zero, errWaitedTooLong
			}
			// Taken meanwhile: its batch is running; wait for it.
		}
	}
}

func (g *groupCommit[T, R]) enqueue(c *call[T, R]) {
	g.mu.Lock()
	g.pending = append(g.pending, c)
	if g.inFlight == g.slots {
		g.mu.Unlock()
		return
	}
	g.inFlight++
	batch := g.take()
	g.mu.Unlock()
	go g.loop(batch)
}

// loop runs batches on one slot until nothing is pending.
func (g *groupCommit[T, R]) loop(batch []*call[T, R]) {
	for {
		if len(batch) > 0 {
			g.run(batch)
			for _, c := range batch {
				close(c.done)
			}
		}
		g.mu.Lock()
		batch = g.take()
		if len(batch) == 0 {
			g.inFlight--
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
	}
}

// take removes up to max waiting calls from the front of the queue and
// marks them taken; calls their callers abandoned are dropped. g.mu held.
func (g *groupCommit[T, R]) take() []*call[T, R] {
	var batch []*call[T, R]
	n := 0
	for ; n < len(g.pending) && len(batch) < g.max; n++ {
		if c := g.pending[n]; c.state.CompareAndSwap(waiting, taken) {
			batch = append(batch, c)
		}
	}
	rest := copy(g.pending, g.pending[n:])
	clear(g.pending[rest:])
	g.pending = g.pending[:rest]
	return batch
}
