//go:build faults

package faults

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/usersd/internal/dbtest"
)

// readHeaderTimeout is the documented bound on sending the request headers.
const readHeaderTimeout = 5 * time.Second

// TestSlowHeaderClients opens 200 connections that send their request
// headers one byte a second (half an HTTP/1.1 request, half the HTTP/2
// connection preface) and checks that usersd closes each of them after
// ReadHeaderTimeout, while normal requests keep being served promptly.
func TestSlowHeaderClients(t *testing.T) {
	t.Parallel()
	u := startUsersd(t, dbtest.URL(t), map[string]string{"DB_MAX_CONNS": "4", "RIVER_WORKERS": "1"})

	const slow = 200
	h1req := "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + strings.Repeat("s", 40) + "\r\n\r\n"
	h2pre := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

	type slowResult struct {
		lived time.Duration
		err   error
	}
	results := make([]slowResult, slow)
	var wg sync.WaitGroup
	for i := range slow {
		payload := h1req
		if i%2 == 1 {
			payload = h2pre
		}
		wg.Go(func() {
			lived, err := trickle(u.Addr, payload, 15*time.Second)
			results[i] = slowResult{lived, err}
		})
	}

	// Normal traffic meanwhile, on kept-alive and on fresh connections.
	apis := loadAPIs(t, u.URL)
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer fresh.CloseIdleConnections()
	var normal int
	deadline := time.Now().Add(readHeaderTimeout + 3*time.Second)
	for i := 0; time.Now().Before(deadline) && i < 1000; i++ {
		a := apis[i%len(apis)]
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		r := a.create(ctx, newUser("slowloris"))
		if r.ok() {
			r = a.get(ctx, r.user.Id)
		}
		if r.ok() && i%5 == 0 {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.URL+"/healthz", nil)
			resp, err := fresh.Do(req)
			if err != nil {
				r = result{err: err}
			} else {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					r = result{err: errors.New("fresh connection: /healthz " + resp.Status)}
				}
			}
		}
		cancel()
		normal++
		if !r.ok() {
			t.Errorf("%s: normal request during the slow-client attack failed: %v", a.name, r)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: normal request took %s during the slow-client attack", a.name, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	t.Logf("%d normal request rounds served during the attack", normal)

	early, late, failed := 0, 0, 0
	for i, r := range results {
		switch {
		case r.err != nil:
			failed++
			if failed <= 3 {
				t.Errorf("slow connection %d: %v", i, r.err)
			}
		case r.lived < readHeaderTimeout-time.Second:
			early++
			if early <= 3 {
				t.Errorf("slow connection %d closed after %s, before ReadHeaderTimeout (%s)", i, r.lived, readHeaderTimeout)
			}
		case r.lived > readHeaderTimeout+3*time.Second:
			late++
			if late <= 3 {
				t.Errorf("slow connection %d stayed open %s, past ReadHeaderTimeout (%s)", i, r.lived, readHeaderTimeout)
			}
		}
	}
	if early+late+failed > 0 {
		t.Errorf("of %d slow connections %d closed too early, %d too late, %d never", slow, early, late, failed)
	}
}

// trickle dials addr and writes payload one byte a second until the server
// closes the connection, and returns how long the connection lived. It gives
// up after limit.
func trickle(addr, payload string, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(start.Add(limit))
	closed := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(closed)
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for i := range len(payload) - 1 { // never complete the request
			if _, err := conn.Write([]byte{payload[i]}); err != nil {
				return
			}
			select {
			case <-closed:
				return
			case <-t.C:
			}
		}
	})
	buf := make([]byte, 512)
	for {
		_, err := conn.Read(buf)
		if err == nil {
			continue // e.g. a 408 before the close
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return time.Since(start), errors.New("server never closed the connection within " + limit.String())
		}
		return time.Since(start), nil
	}
}
