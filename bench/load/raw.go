package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// load raw: read-after-write over REST, open loop. Pair i is due at
// start+i/rate: POST /users, then at once GET /users/{the new id}, with the
// create's Consistency-Token sent back (-token) or without it. A GET that
// answers 404 read a database that has not replayed the create yet: a
// stale read. The pair's latency runs from its due time to the GET's
// answer, so a slow create counts as it would for a client.
//
//	load raw -url U -rate R [-d 5s] [-token]
//
// Prints one JSON object: rawResult.

type rawResult struct {
	Token   bool    `json:"token"`
	Rate    float64 `json:"rate"`
	Seconds float64 `json:"seconds"`
	Pairs   int64   `json:"pairs"`  // measured pairs that completed, fresh or stale
	Fresh   int64   `json:"fresh"`  // the GET found the user
	Stale   int64   `json:"stale"`  // the GET answered 404
	Errors  int64   `json:"errors"` // anything else, dropped pairs included
	// NoToken counts creates that answered without a Consistency-Token:
	// an error with -token, since the read could not ask for the write.
	NoToken     int64          `json:"no_token"`
	P50ms       float64        `json:"p50_ms"` // the pair
	P99ms       float64        `json:"p99_ms"`
	CreateP50ms float64        `json:"create_p50_ms"`
	GetP50ms    float64        `json:"get_p50_ms"`
	LagP99ms    float64        `json:"lag_p99_ms"`
	ErrorKind   map[string]int `json:"error_kinds,omitempty"`
	ClientCPUus float64        `json:"client_cpu_us"` // per pair, this process's
}

type rawRecorder struct {
	mu                sync.Mutex
	pair, create, get []time.Duration
	lag               []time.Duration
	res               rawResult
}

func (r *rawRecorder) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Errors++
	if r.res.ErrorKind == nil {
		r.res.ErrorKind = map[string]int{}
	}
	// Not the URL: every pair's is its own.
	k := err.Error()
	if ue, ok := errors.AsType[*url.Error](err); ok {
		k = ue.Op + ": " + ue.Err.Error()
	}
	if len(k) > 80 {
		k = k[:80]
	}
	r.res.ErrorKind[k]++
}

func runRaw(args []string) error {
	fs := flag.NewFlagSet("raw", flag.ExitOnError)
	base := fs.String("url", "http://127.0.0.1:8000", "base URL")
	rate := fs.Float64("rate", 100, "pairs per second")
	dur := fs.Duration("d", 5*time.Second, "measured duration")
	warmup := fs.Duration("warmup", 500*time.Millisecond, "pairs before measuring (not counted)")
	token := fs.Bool("token", false, "send the create's Consistency-Token with the GET")
	timeout := fs.Duration("timeout", 5*time.Second, "per-pair timeout")
	_ = fs.Parse(args)

	hc := &http.Client{Transport: newTransport(false, 256)}
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	var seq atomic.Int64
	// pair makes one create-then-read; stale reports a 404 on the read.
	pair := func(ctx context.Context) (create, get time.Duration, stale, noToken bool, err error) {
		t0 := time.Now()
		body := `{"email":"raw` + nonce + `-` + strconv.FormatInt(seq.Add(1), 10) + `@example.com","full_name":"Bench User"}`
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, *base+"/users", strings.NewReader(body))
		if err != nil {
			return 0, 0, false, false, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return 0, 0, false, false, err
		}
		var u struct {
			ID string `json:"id"`
		}
		derr := json.NewDecoder(resp.Body).Decode(&u)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return 0, 0, false, false, fmt.Errorf("create: status %d", resp.StatusCode)
		}
		if derr != nil || u.ID == "" {
			return 0, 0, false, false, fmt.Errorf("create: no id in the answer (%v)", derr)
		}
		tok := resp.Header.Get("Consistency-Token")
		noToken = tok == ""
		if *token && noToken {
			return 0, 0, false, true, errors.New("create answered without a Consistency-Token")
		}
		t1 := time.Now()
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, *base+"/users/"+u.ID, nil)
		if err != nil {
			return 0, 0, false, noToken, err
		}
		if *token {
			req.Header.Set("Consistency-Token", tok)
		}
		resp, err = hc.Do(req)
		if err != nil {
			return 0, 0, false, noToken, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusNotFound:
			stale = true
		default:
			return 0, 0, false, noToken, fmt.Errorf("get: status %d", resp.StatusCode)
		}
		return t1.Sub(t0), time.Since(t1), stale, noToken, nil
	}

	var rec rawRecorder
	var done atomic.Int64
	interval := time.Duration(float64(time.Second) / *rate)
	start := time.Now().Add(10 * time.Millisecond)
	measureFrom := start.Add(*warmup)
	const maxInFlight = 1024
	var inflight atomic.Int64
	var wg sync.WaitGroup
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if due.Sub(start) >= *warmup+*dur {
			break
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		measured := !due.Before(measureFrom)
		if inflight.Load() >= maxInFlight {
			if measured {
				rec.fail(errors.New("dropped: too many pairs in flight"))
			}
			continue
		}
		inflight.Add(1)
		wg.Go(func() {
			defer inflight.Add(-1)
			lag := time.Since(due)
			ctx, cancel := context.WithDeadline(context.Background(), due.Add(*timeout))
			c, g, stale, noToken, err := pair(ctx)
			cancel()
			done.Add(1)
			if !measured {
				return
			}
			if err != nil {
				rec.fail(err)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.lag = append(rec.lag, lag)
			if noToken {
				rec.res.NoToken++
			}
			if err != nil {
				return
			}
			rec.res.Pairs++
			if stale {
				rec.res.Stale++
			} else {
				rec.res.Fresh++
			}
			rec.pair = append(rec.pair, time.Since(due))
			rec.create = append(rec.create, c)
			rec.get = append(rec.get, g)
		})
	}
	wg.Wait()

	res := rec.res
	res.Token, res.Rate, res.Seconds = *token, *rate, dur.Seconds()
	res.P50ms, res.P99ms = quantileMs(rec.pair, 0.50), quantileMs(rec.pair, 0.99)
	res.CreateP50ms, res.GetP50ms = quantileMs(rec.create, 0.50), quantileMs(rec.get, 0.50)
	res.LagP99ms = quantileMs(rec.lag, 0.99)
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil && done.Load() > 0 {
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		res.ClientCPUus = float64(cpu.Microseconds()) / float64(done.Load())
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}
