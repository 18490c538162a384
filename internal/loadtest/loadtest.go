// Package loadtest runs a steady load of calls against a service under test
// and records every call, with when it started and ended and what it
// returned, so that a test can judge each call by what happened meanwhile
// (a database outage, a replica killed, a shutdown). What a call does is the
// caller's: this package only paces, times and records.
package loadtest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Call is one recorded operation.
type Call[R any] struct {
	Entry      string // the client, or entry point, that made it
	Op         string // what it did: create, get...
	Start, End time.Time
	Result     R
}

// Took is how long the call took.
func (c Call[R]) Took() time.Duration { return c.End.Sub(c.Start) }

func (c Call[R]) String() string {
	return fmt.Sprintf("%s %s at %s (took %s): %v", c.Entry, c.Op, c.Start.Format("15:04:05.000"), c.Took().Round(time.Millisecond), c.Result)
}

// Do runs f as operation op of entry and returns it timed.
func Do[R any](entry, op string, f func() R) Call[R] {
	c := Call[R]{Entry: entry, Op: op, Start: time.Now()}
	c.Result = f()
	c.End = time.Now()
	return c
}

// Result is a call's outcome that tells success from failure.
type Result interface {
	Err() error // nil for success
}

// Failures are the calls that did not succeed.
func Failures[R Result](calls []Call[R]) []Call[R] {
	var out []Call[R]
	for _, c := range calls {
		if c.Result.Err() != nil {
			out = append(out, c)
		}
	}
	return out
}

// Summary counts calls by operation and by entry point, for the log.
func Summary[R any](calls []Call[R]) string {
	byEntry, byOp := map[string]int{}, map[string]int{}
	for _, c := range calls {
		byEntry[c.Entry]++
		byOp[c.Op]++
	}
	return fmt.Sprintf("%d calls; by operation %s; by entry point %s", len(calls), Counts(byOp), Counts(byEntry))
}

// Counts formats m as "a=1 b=2", keys sorted.
func Counts(m map[string]int) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}

// Config paces a load.
type Config struct {
	Workers int
	// Interval, when set, starts each worker's steps at a fixed rate, one
	// every Interval, the workers staggered over one interval: the load
	// stays the same however long the calls take.
	Interval time.Duration
	// Pause, when set, is the wait after each step.
	Pause time.Duration
	// MaxDuration and MaxSteps (per worker), when set, end the load by
	// themselves: a test that fails before it stops the load does not
	// flood the service until the test's timeout.
	MaxDuration time.Duration
	MaxSteps    int
}

// Worker is what a step gets: which worker runs it, which of its steps it
// is, and where to record its calls.
type Worker[R any] struct {
	ID   int // 0 to Config.Workers-1
	Step int // 0 for the worker's first step
	load *Load[R]
}

// Do runs f as operation op of entry, records the call and returns it.
func (w *Worker[R]) Do(entry, op string, f func() R) Call[R] {
	c := Do(entry, op, f)
	w.load.Record(c)
	return c
}

// Record records a call the step timed itself (with the package's Do).
func (w *Worker[R]) Record(c Call[R]) { w.load.Record(c) }

// Load is a running load and the calls it made.
type Load[R any] struct {
	mu    sync.Mutex
	calls []Call[R]
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

// Start runs c.Workers workers, each running step over and over, paced as
// c says, until Stop, which the end of the test calls at the latest.
func Start[R any](t testing.TB, c Config, step func(w *Worker[R])) *Load[R] {
	l := &Load[R]{stop: make(chan struct{})}
	begin := time.Now()
	for id := range c.Workers {
		l.wg.Go(func() {
			w := &Worker[R]{ID: id, load: l}
			next := begin.Add(c.Interval * time.Duration(id) / time.Duration(c.Workers))
			for ; c.MaxSteps == 0 || w.Step < c.MaxSteps; w.Step++ {
				if c.MaxDuration > 0 && time.Since(begin) >= c.MaxDuration {
					return
				}
				if !l.sleep(time.Until(next)) {
					return
				}
				next = next.Add(c.Interval)
				step(w)
				if !l.sleep(c.Pause) {
					return
				}
			}
		})
	}
	t.Cleanup(l.Stop)
	return l
}

// sleep waits d, and reports false, at once, when the load is stopped.
func (l *Load[R]) sleep(d time.Duration) bool {
	select {
	case <-l.stop:
		return false
	default:
	}
	if d <= 0 {
		return true
	}
	select {
	case <-l.stop:
		return false
	case <-time.After(d):
		return true
	}
}

// Record adds c to the load's calls.
func (l *Load[R]) Record(c Call[R]) {
	l.mu.Lock()
	l.calls = append(l.calls, c)
	l.mu.Unlock()
}

// Stop ends the load and waits for the calls in flight.
func (l *Load[R]) Stop() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// Snapshot returns the calls so far.
func (l *Load[R]) Snapshot() []Call[R] {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}
