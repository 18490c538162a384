//go:build faults

package faults

import (
	"context"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/internal/loadtest"
)

// TestPoolExhaustion: with DB_MAX_CONNS=2 and both connections held by
// queries that block on a locked table, 100 concurrent creates wait for a
// connection at most DB_ACQUIRE_TIMEOUT and then get unavailable / 503; the
// two holding the connections finish once the lock goes, and the service
// serves normally again as soon as the load stops.
func TestPoolExhaustion(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.URL(t)
	u := startUsersd(t, dbURL, map[string]string{
		"DB_MAX_CONNS":       "2",
		"DB_MIN_CONNS":       "2",
		"DB_ACQUIRE_TIMEOUT": acquireTimeout.String(),
		"REQUEST_TIMEOUT":    "30s",
		"RIVER_WORKERS":      "0", // River would hold pool connections of its own
	})
	apis := loadAPIs(t, u.URL)

	locker := dbtest.Connect(t, dbURL)
	tx := dbtest.LockUsers(t, locker)

	const n = 100
	calls := make([]call, n)
	done := make(chan int, n)
	startGate := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		a := apis[i%len(apis)]
		wg.Go(func() {
			req := newUser("pool")
			<-startGate
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			calls[i] = loadtest.Do(a.name, "create", func() result { return a.create(ctx, req) })
			done <- i
		})
	}
	close(startGate)

	// All but the two holding the connections must give up on their own.
	finished := map[int]bool{}
	timeout := time.After(15 * time.Second)
wait:
	for len(finished) < n-2 {
		select {
		case i := <-done:
			finished[i] = true
		case <-timeout:
			break wait
		}
	}
	if len(finished) < n-2 {
		t.Errorf("only %d of %d calls returned within 15s while the pool was exhausted", len(finished), n)
	}
	// Nothing more finishes while the lock holds.
	select {
	case i := <-done:
		finished[i] = true
		t.Errorf("a call returned while both pool connections were blocked: %v", calls[i])
	case <-time.After(500 * time.Millisecond):
	}
	unavailable := 0
	for i := range finished {
		c := calls[i]
		if c.Result.code == connect.CodeUnavailable && c.Result.wire {
			unavailable++
		} else {
			t.Errorf("while the pool was exhausted: %v, want unavailable from the server", c)
		}
		if c.Took() > acquireTimeout+2*time.Second {
			t.Errorf("waited %s for a connection, DB_ACQUIRE_TIMEOUT is %s: %v", c.Took(), acquireTimeout, c)
		}
	}
	checkNoServerFaults(t, calls)

	released := time.Now()
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(done)
	succeeded := 0
	for i, c := range calls {
		if finished[i] {
			continue
		}
		if !c.Result.ok() {
			t.Errorf("a call holding a connection failed once the lock went: %v", c)
		} else {
			succeeded++
		}
		if c.End.Sub(released) > time.Second {
			t.Errorf("a call holding a connection finished %s after the lock went", c.End.Sub(released))
		}
	}
	t.Logf("%d unavailable, %d succeeded after the lock went", unavailable, succeeded)
	if unavailable != n-2 || succeeded != 2 {
		t.Errorf("got %d unavailable and %d successes, want %d and 2", unavailable, succeeded, n-2)
	}

	// The load has stopped: the service recovers at once.
	for i := range 20 {
		a := apis[i%len(apis)]
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		start := time.Now()
		r := a.create(ctx, newUser("pool-after"))
		cancel()
		if !r.ok() {
			t.Errorf("%s: call %d after the load stopped: %v", a.name, i, r)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("%s: call %d after the load stopped took %s", a.name, i, d)
		}
	}
	if p := probeHealth(t.Context(), h2cClient(t), u.URL); !p.serving() {
		t.Errorf("health after the load stopped: /healthz %d, gRPC %v", p.healthz, p.grpc)
	}
}
