package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a batch runner that records its batches; it can be held.
type recorder struct {
	mu       sync.Mutex
	batches  [][]int
	inFlight atomic.Int32
	maxSeen  atomic.Int32
	hold     chan struct{} // closed: batches run; open: they wait
}

func (r *recorder) run(batch []*call[int, int]) {
	n := r.inFlight.Add(1)
	for {
		m := r.maxSeen.Load()
		if n <= m || r.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	<-r.hold
	ids := make([]int, len(batch))
	for i, c := range batch {
		ids[i] = c.In
		c.Out = c.In * 10
	}
	r.mu.Lock()
	r.batches = append(r.batches, ids)
	r.mu.Unlock()
	r.inFlight.Add(-1)
}

func TestGroupCommitBatches(t *testing.T) {
	t.Parallel()
	rec := &recorder{hold: make(chan struct{})}
	g := newGroupCommit(8, 2, rec.run)
	const n = 500
	var wg sync.WaitGroup
	results := make([]int, n)
	for i := range n {
		wg.Go(func() {
			out, err := g.do(context.Background(), i, time.Minute)
			if err != nil {
				t.Errorf("call %d: %v", i, err)
			}
			results[i] = out
		})
	}
	time.Sleep(50 * time.Millisecond) // let the calls queue behind the held slots
	close(rec.hold)
	wg.Wait()
	seen := map[int]bool{}
	for _, b := range rec.batches {
		if len(b) == 0 || len(b) > 8 {
			t.Errorf("a batch of %d calls, want 1 to 8", len(b))
		}
		for _, id := range b {
			if seen[id] {
				t.Errorf("call %d ran twice", id)
			}
			seen[id] = true
		}
	}
	for i, out := range results {
		if !seen[i] || out != i*10 {
			t.Errorf("call %d: ran %v, got %d", i, seen[i], out)
		}
	}
	if m := rec.maxSeen.Load(); m > 2 {
		t.Errorf("%d batches in flight at once, want at most 2", m)
	}
	if len(rec.batches) >= n/2 {
		t.Errorf("%d batches for %d calls queued behind busy slots: they did not share", len(rec.batches), n)
	}
}

func TestGroupCommitLoneCallRunsAtOnce(t *testing.T) {
	t.Parallel()
	rec := &recorder{hold: make(chan struct{})}
	close(rec.hold)
	g := newGroupCommit(64, 2, rec.run)
	for i := range 3 {
		if out, err := g.do(context.Background(), i, time.Minute); err != nil || out != i*10 {
			t.Fatalf("call %d: %d, %v", i, out, err)
		}
	}
	for _, b := range rec.batches {
		if len(b) != 1 {
			t.Errorf("sequential calls shared a batch: %v", rec.batches)
		}
	}
}

// TestGroupCommitCallersGiveUp: a call whose caller gives up (its context
// ends, or it waits longer than maxWait) before a batch takes it never
// runs; one already taken runs to the end without its caller.
func TestGroupCommitCallersGiveUp(t *testing.T) {
	t.Parallel()
	rec := &recorder{hold: make(chan struct{})}
	g := newGroupCommit(64, 1, rec.run)
	firstDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := g.do(ctx, 1, time.Minute) // taken at once, then its caller leaves
		firstDone <- err
	}()
	for rec.inFlight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan error, 1)
	go func() { _, err := g.do(ctx, 2, time.Minute); cancelled <- err }()
	waited := make(chan error, 1)
	go func() { _, err := g.do(context.Background(), 3, 30*time.Millisecond); waited <- err }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v", err)
	}
	if err := <-waited; !errors.Is(err, errWaitedTooLong) {
		t.Errorf("caller past maxWait: %v, want errWaitedTooLong", err)
	}
	if err := <-firstDone; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("caller of a running batch: %v, want its deadline", err)
	}
	close(rec.hold)
	if out, err := g.do(context.Background(), 4, time.Minute); err != nil || out != 40 {
		t.Fatalf("call after: %d, %v", out, err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := [][]int{{1}, {4}}
	if len(rec.batches) != 2 || rec.batches[0][0] != 1 || len(rec.batches[1]) != 1 || rec.batches[1][0] != 4 {
		t.Errorf("batches %v, want %v: abandoned calls must not run, taken ones must", rec.batches, want)
	}
}

// TestGroupCommitCallerAlreadyGone: a call made with a context that has
// already ended returns its error and never runs, even with a free slot.
func TestGroupCommitCallerAlreadyGone(t *testing.T) {
	t.Parallel()
	rec := &recorder{hold: make(chan struct{})}
	close(rec.hold)
	g := newGroupCommit(64, 2, rec.run)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := g.do(ctx, 1, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("call with a cancelled context: %v, want context.Canceled", err)
	}
	if out, err := g.do(context.Background(), 2, time.Minute); err != nil || out != 20 {
		t.Fatalf("call after it: %d, %v", out, err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, b := range rec.batches {
		for _, id := range b {
			if id == 1 {
				t.Errorf("the call whose caller had gone ran: batches %v", rec.batches)
			}
		}
	}
}
