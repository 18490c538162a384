//go:build !nodb

package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/internal/proctest"
)

// TestSideServersStopWithTheServer: the pprof and metrics servers answer
// while usersd serves and are gone once run has returned.
func TestSideServersStopWithTheServer(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"DATABASE_URL":  dbtest.URL(t),
		"AUTH_DISABLED": "true", // on purpose: the test is about the side ports
		"BIND":          "127.0.0.1:0",
		"PPROF_BIND":    freeAddr(t),
		"METRICS_BIND":  freeAddr(t),
		"RIVER_WORKERS": "0",
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logs := &proctest.SyncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"usersd"}, func(k string) string { return env[k] }, logs) }()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), "usersd listening"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("usersd did not start: %s", logs.String())
		}
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, url := range []string{"http://" + env["METRICS_BIND"] + "/metrics", "http://" + env["PPROF_BIND"] + "/debug/pprof/"} {
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatalf("GET %s while serving: %v", url, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s while serving: %s", url, resp.Status)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within 30 s of the signal")
	}
	for _, addr := range []string{env["METRICS_BIND"], env["PPROF_BIND"]} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after usersd stopped", addr)
		}
	}
}

// freeAddr is a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
