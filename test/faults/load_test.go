//go:build faults

package faults

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
)

// call is one request of a load run.
type call struct {
	api        string
	op         string
	email      string
	start, end time.Time
	res        result
}

func (c call) took() time.Duration { return c.end.Sub(c.start) }

func (c call) String() string {
	return fmt.Sprintf("%s %s at %s (took %s): %v", c.api, c.op, c.start.Format("15:04:05.000"), c.took().Round(time.Millisecond), c.res)
}

// load is a steady stream of creates (and gets of the created users) from
// several workers, each on one entry point. Every call is recorded.
type load struct {
	mu    sync.Mutex
	calls []call
	stop  chan struct{}
	wg    sync.WaitGroup
}

// startLoad runs workers until stopLoad, at most maxDur and a bounded number
// of calls. Each call has the given client-side timeout.
func startLoad(t testing.TB, apis []api, workers int, pause, timeout, maxDur time.Duration) *load {
	l := &load{stop: make(chan struct{})}
	end := time.Now().Add(maxDur)
	for w := range workers {
		a := apis[w%len(apis)]
		l.wg.Go(func() {
			for i := 0; i < 100000 && time.Now().Before(end); i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				req := newUser(fmt.Sprintf("load%d", w))
				c := call{api: a.name, op: "create", email: req.Email, start: time.Now()}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				c.res = a.create(ctx, req)
				c.end = time.Now()
				l.record(c)
				if c.res.ok() && i%3 == 0 {
					g := call{api: a.name, op: "get", start: time.Now()}
					g.res = a.get(ctx, c.res.user.Id)
					g.end = time.Now()
					l.record(g)
				}
				cancel()
				select {
				case <-l.stop:
					return
				case <-time.After(pause):
				}
			}
		})
	}
	t.Cleanup(l.stopLoad)
	return l
}

func (l *load) record(c call) {
	l.mu.Lock()
	l.calls = append(l.calls, c)
	l.mu.Unlock()
}

func (l *load) stopLoad() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// snapshot returns the calls so far.
func (l *load) snapshot() []call {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]call(nil), l.calls...)
}

// isServerFault reports a result that DESIGN.md never allows: internal or
// unknown, or a REST 5xx other than 503 and 504.
func isServerFault(r result) bool {
	if r.code == connect.CodeInternal || r.code == connect.CodeUnknown {
		return true
	}
	return r.status >= 500 && r.status != http.StatusServiceUnavailable && r.status != http.StatusGatewayTimeout
}

// checkNoServerFaults fails the test for every internal error or 500.
func checkNoServerFaults(t testing.TB, calls []call) {
	t.Helper()
	n := 0
	for _, c := range calls {
		if isServerFault(c.res) {
			n++
			if n <= 10 {
				t.Errorf("server fault: %v", c)
			}
		}
	}
	if n > 0 {
		t.Errorf("%d calls ended in internal / 500", n)
	}
}

// healthLog records readiness probes over time.
type healthLog struct {
	mu     sync.Mutex
	probes []timedProbe
	stop   chan struct{}
	wg     sync.WaitGroup
}

type timedProbe struct {
	start time.Time
	healthProbe
}

func startHealthLog(t testing.TB, base string, every, maxDur time.Duration) *healthLog {
	h := &healthLog{stop: make(chan struct{})}
	hc := h2cClient(t)
	end := time.Now().Add(maxDur)
	h.wg.Go(func() {
		for time.Now().Before(end) {
			start := time.Now()
			p := probeHealth(context.Background(), hc, base)
			h.mu.Lock()
			h.probes = append(h.probes, timedProbe{start, p})
			h.mu.Unlock()
			select {
			case <-h.stop:
				return
			case <-time.After(every):
			}
		}
	})
	t.Cleanup(h.stopLog)
	return h
}

func (h *healthLog) stopLog() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	h.wg.Wait()
}

func (h *healthLog) snapshot() []timedProbe {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]timedProbe(nil), h.probes...)
}
