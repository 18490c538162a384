package loadtest

import (
	"errors"
	"testing"
	"time"
)

type outcome struct{ err error }

func (o outcome) Err() error { return o.err }

func TestLoad(t *testing.T) {
	cfg := Config{Workers: 3, Pause: time.Millisecond, MaxSteps: 4}
	l := Start(t, cfg, func(w *Worker[outcome]) {
		c := w.Do("w", "create", func() outcome { return outcome{} })
		if w.ID == 0 && w.Step%2 == 0 {
			w.Record(Do("w", "get", func() outcome { return outcome{err: errors.New("boom")} }))
		}
		if c.End.Before(c.Start) {
			t.Errorf("call ended before it started: %v", c)
		}
	})
	// MaxSteps ends each worker by itself.
	deadline := time.Now().Add(10 * time.Second)
	for len(l.Snapshot()) < 14 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	l.Stop()
	calls := l.Snapshot()
	if len(calls) != 14 {
		t.Fatalf("%d calls, want 3 workers x 4 creates + 2 gets", len(calls))
	}
	if f := Failures(calls); len(f) != 2 || f[0].Op != "get" {
		t.Errorf("failures %v, want the 2 gets", f)
	}
	if got, want := Summary(calls), "14 calls; by operation create=12 get=2; by entry point w=14"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
}

func TestStopEndsAPacedLoad(t *testing.T) {
	l := Start(t, Config{Workers: 2, Interval: time.Hour}, func(w *Worker[outcome]) {
		w.Do("w", "op", func() outcome { return outcome{} })
	})
	done := make(chan struct{})
	go func() { l.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not end workers waiting for their next interval")
	}
	// Worker 0 starts at once; worker 1 waits half an hour for its first step.
	if n := len(l.Snapshot()); n > 1 {
		t.Errorf("%d calls, want at most worker 0's first", n)
	}
}
