//go:build faults

package faults

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/acme/usersd/internal/loadtest"
)

// call is one request of a load run.
type call = loadtest.Call[result]

// startLoad runs a steady stream of creates (and gets of every third
// created user) from workers, each on one entry point, until the load is
// stopped, at most maxDur and a bounded number of calls. Each call has the
// given client-side timeout.
func startLoad(t testing.TB, apis []api, workers int, pause, timeout, maxDur time.Duration) *loadtest.Load[result] {
	cfg := loadtest.Config{Workers: workers, Pause: pause, MaxDuration: maxDur, MaxSteps: 100000}
	return loadtest.Start(t, cfg, func(w *loadtest.Worker[result]) {
		a := apis[w.ID%len(apis)]
		req := newUser(fmt.Sprintf("load%d", w.ID))
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c := w.Do(a.name, "create", func() result { return a.create(ctx, req) })
		if c.Result.ok() && w.Step%3 == 0 {
			w.Do(a.name, "get", func() result { return a.get(ctx, c.Result.user.Id) })
		}
	})
}

// isServerFault reports a result the error table (docs/design.md) never allows:
// internal or unknown, or a REST 5xx other than 503 and 504.
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
		if isServerFault(c.Result) {
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

// probe is one readiness probe of a health log.
type probe = loadtest.Call[healthProbe]

// startHealthLog probes readiness every interval until stopped, at most
// maxDur.
func startHealthLog(t testing.TB, base string, every, maxDur time.Duration) *loadtest.Load[healthProbe] {
	hc := h2cClient(t)
	cfg := loadtest.Config{Workers: 1, Pause: every, MaxDuration: maxDur}
	return loadtest.Start(t, cfg, func(w *loadtest.Worker[healthProbe]) {
		w.Do(base, "health", func() healthProbe { return probeHealth(context.Background(), hc, base) })
	})
}
