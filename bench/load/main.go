// Command load is bench/'s own load generator, for what wrk, h2load and ghz
// cannot do: Connect proto over h2c with a random id per request, CreateUser
// over an RPC protocol, and the constant-rate (open-loop) latency phase of
// every entry point; the change feed's pager, watch-latency and
// idle-watcher measurements (feed.go); and read-after-write pairs against
// a usersd that reads from a replica (raw.go).
//
//	load closed -url U -proto P -c N [-conns K] [-d 5s] [-ids FILE] [-header "K: V"]
//	load open   -url U -proto P -rate R [-conns K] [-d 5s] [-ids FILE] [-header "K: V"]
//	load pages  -url U -pages N [-size 50]   (prints the page_token of page N)
//	load protoset -o FILE                    (descriptor set for ghz)
//	load feedpage | feedwatch | idlewatch    (the change feed: see feed.go)
//	load raw    -url U -rate R [-d 5s] [-token] (create, then read it: raw.go)
//
// Open loop keeps itself honest: request i is due at start+i/rate whatever
// happened to earlier requests, and its latency runs from that scheduled
// time, so a stalled server shows up as latency instead of as a slower
// sender (no coordinated omission).
//
// Protocols (P): rest (GET /users/{id}, JSON), connect-json (Connect POST,
// JSON), connect-get (Connect GET, JSON in the query), connect-proto, grpc,
// rest-create (POST /users), connect-create (CreateUser, Connect proto),
// rest-list (GET /users?page_token=T with -token). -h2 makes the JSON
// protocols use cleartext HTTP/2; connect-proto, grpc and connect-create
// always do.
//
// -header (repeatable) adds a request header to every request of every
// protocol, e.g. -header "Authorization: Bearer $TOKEN" against a usersd
// with authentication on.
//
// The result is one JSON object on stdout.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/gen/users/v1/usersv1connect"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: load closed|open|pages|protoset|feedpage|feedwatch|idlewatch|raw [flags]")
	}
	var err error
	switch os.Args[1] {
	case "closed", "open":
		err = runLoad(os.Args[1], os.Args[2:])
	case "pages":
		err = runPages(os.Args[2:])
	case "protoset":
		err = runProtoset(os.Args[2:])
	case "feedpage":
		err = runFeedPage(os.Args[2:])
	case "feedwatch":
		err = runFeedWatch(os.Args[2:])
	case "idlewatch":
		err = runIdleWatch(os.Args[2:])
	case "raw":
		err = runRaw(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "load:", msg)
	os.Exit(1)
}

type options struct {
	url      string
	proto    string
	h2       bool
	conc     int
	conns    int
	rate     float64
	duration time.Duration
	warmup   time.Duration
	idsFile  string
	token    string
	timeout  time.Duration
	headers  http.Header // -header: sent with every request
}

// result is what one run reports.
type result struct {
	Mode    string  `json:"mode"`
	Proto   string  `json:"proto"`
	Conc    int     `json:"conc,omitempty"`
	Rate    float64 `json:"rate,omitempty"`
	Seconds float64 `json:"seconds"`
	OK      int64   `json:"ok"`
	Total   int64   `json:"total"` // every completed call, warm-up and probes included
	Errors  int64   `json:"errors"`
	Dropped int64   `json:"dropped,omitempty"`
	RPS     float64 `json:"rps"`
	P50ms   float64 `json:"p50_ms"`
	P90ms   float64 `json:"p90_ms"`
	P99ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
	// LagP99ms is how late (p99) the open loop got a request going after
	// its scheduled time: the generator's own delay, which is part of the
	// latencies above. A large one means the numbers say more about the
	// machine than about the server.
	LagP99ms  float64        `json:"lag_p99_ms,omitempty"`
	ErrorKind map[string]int `json:"error_kinds,omitempty"`
	// ClientCPUus is this generator's own CPU time (user + system) per
	// completed call, probes and warm-up included: what the client takes
	// from the CPUs it shares with the server.
	ClientCPUus float64 `json:"client_cpu_us"`
}

func runLoad(mode string, args []string) error {
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	var o options
	fs.StringVar(&o.url, "url", "http://127.0.0.1:8000", "base URL")
	fs.StringVar(&o.proto, "proto", "connect-proto", "protocol / entry point")
	fs.BoolVar(&o.h2, "h2", false, "cleartext HTTP/2 for the JSON protocols")
	fs.IntVar(&o.conc, "c", 32, "closed loop: concurrent requests")
	fs.IntVar(&o.conns, "conns", 4, "HTTP/2: TCP connections")
	fs.Float64Var(&o.rate, "rate", 1000, "open loop: requests per second")
	fs.DurationVar(&o.duration, "d", 5*time.Second, "measured duration")
	fs.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "load before measuring (not counted)")
	fs.StringVar(&o.idsFile, "ids", "", "file of user ids, one a line")
	fs.StringVar(&o.token, "token", "", "rest-list: page token")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "per-request timeout")
	o.headers = http.Header{}
	fs.Func("header", `"Name: value" sent with every request (repeatable)`, func(s string) error {
		k, v, ok := strings.Cut(s, ":")
		if k = strings.TrimSpace(k); !ok || k == "" {
			return fmt.Errorf("want \"Name: value\", got %q", s)
		}
		o.headers.Add(k, strings.TrimSpace(v))
		return nil
	})
	_ = fs.Parse(args)

	var ids []string
	if o.idsFile != "" {
		var err error
		if ids, err = readLines(o.idsFile); err != nil {
			return err
		}
	}
	if len(ids) == 0 && needsIDs(o.proto) {
		return errors.New("-ids is required for " + o.proto)
	}
	calls, err := newCallers(o, ids)
	if err != nil {
		return err
	}
	// A first call per connection checks the set-up before any timing.
	for _, c := range calls {
		completed.Add(1)
		if err := c(context.Background(), rand.New(rand.NewPCG(1, 2))); err != nil {
			return fmt.Errorf("probe request failed: %w", err)
		}
	}
	var res result
	if mode == "closed" {
		res = closedLoop(o, calls)
	} else {
		res = openLoop(o, calls)
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil && res.Total > 0 {
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		res.ClientCPUus = float64(cpu.Microseconds()) / float64(res.Total)
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

func needsIDs(p string) bool {
	switch p {
	case "rest", "connect-json", "connect-get", "connect-proto", "grpc":
		return true
	}
	return false
}

// caller makes one request; each is bound to one HTTP client (connection
// group).
type caller func(ctx context.Context, rng *rand.Rand) error

var createSeq atomic.Int64

// completed counts every call made, for CPU time per request of the server.
var completed atomic.Int64

func newCallers(o options, ids []string) ([]caller, error) {
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	h2 := o.h2
	switch o.proto {
	case "connect-proto", "grpc", "connect-create":
		h2 = true
	}
	if !h2 {
		// HTTP/1.1: the lean client, up to 256 connections (open loop) or
		// one per worker (closed loop).
		size := 256
		if o.conc > 0 {
			size = o.conc
		}
		p, err := newH1Pool(o.url, size, o.headers)
		if err != nil {
			return nil, err
		}
		c, err := newH1Caller(o, p, ids, nonce)
		if err != nil {
			return nil, err
		}
		return []caller{c}, nil
	}
	var calls []caller
	for range max(1, o.conns) {
		hc := &http.Client{Transport: newTransport(true, o.conc), Timeout: o.timeout}
		c, err := newCaller(o, hc, ids, nonce)
		if err != nil {
			return nil, err
		}
		calls = append(calls, c)
	}
	return calls, nil
}

func wantStatus(want int, contains func() string) func(int, []byte) error {
	return func(status int, body []byte) error {
		if status != want {
			return fmt.Errorf("status %d", status)
		}
		if contains != nil {
			if s := contains(); !bytes.Contains(body, []byte(s)) {
				return fmt.Errorf("response lacks %q", s)
			}
		}
		return nil
	}
}

// newH1Caller makes the HTTP/1.1 JSON requests with the lean client: the
// same requests as bench/wrk.lua.
func newH1Caller(o options, p *h1pool, ids []string, nonce string) (caller, error) {
	pick := func(rng *rand.Rand) string { return ids[rng.IntN(len(ids))] }
	switch o.proto {
	case "rest":
		return func(ctx context.Context, rng *rand.Rand) error {
			id := pick(rng)
			return p.do(ctx, "GET", "/users/"+id, "", nil, wantStatus(200, func() string { return id }))
		}, nil
	case "connect-json":
		return func(ctx context.Context, rng *rand.Rand) error {
			id := pick(rng)
			return p.do(ctx, "POST", "/users.v1.UserService/GetUser", "application/json", []byte(`{"id":"`+id+`"}`),
				wantStatus(200, func() string { return id }))
		}, nil
	case "connect-get":
		return func(ctx context.Context, rng *rand.Rand) error {
			id := pick(rng)
			return p.do(ctx, "GET", "/users.v1.UserService/GetUser?encoding=json&message=%7B%22id%22%3A%22"+id+"%22%7D", "", nil,
				wantStatus(200, func() string { return id }))
		}, nil
	case "rest-list":
		path := "/users?page_size=50"
		if o.token != "" {
			path += "&page_token=" + url.QueryEscape(o.token)
		}
		return func(ctx context.Context, _ *rand.Rand) error {
			return p.do(ctx, "GET", path, "", nil, wantStatus(200, nil))
		}, nil
	case "rest-create":
		return func(ctx context.Context, _ *rand.Rand) error {
			n := createSeq.Add(1)
			body := `{"email":"r` + nonce + `-` + strconv.FormatInt(n, 10) + `@example.com","full_name":"Bench User"}`
			return p.do(ctx, "POST", "/users", "application/json", []byte(body), wantStatus(201, nil))
		}, nil
	}
	return nil, fmt.Errorf("-proto %s needs -h2 or is unknown", o.proto)
}

func newTransport(h2 bool, conc int) *http.Transport {
	var p http.Protocols
	if h2 {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	return &http.Transport{
		Protocols:           &p,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: max(conc, 1024),
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
}

func newCaller(o options, hc *http.Client, ids []string, nonce string) (caller, error) {
	pick := func(rng *rand.Rand) string { return ids[rng.IntN(len(ids))] }
	switch o.proto {
	case "rest":
		return func(ctx context.Context, rng *rand.Rand) error {
			return httpDo(ctx, hc, http.MethodGet, o.url+"/users/"+pick(rng), "", "", o.headers, http.StatusOK)
		}, nil
	case "rest-list":
		u := o.url + "/users?page_size=50"
		if o.token != "" {
			u += "&page_token=" + url.QueryEscape(o.token)
		}
		return func(ctx context.Context, _ *rand.Rand) error {
			return httpDo(ctx, hc, http.MethodGet, u, "", "", o.headers, http.StatusOK)
		}, nil
	case "rest-create":
		return func(ctx context.Context, _ *rand.Rand) error {
			n := createSeq.Add(1)
			body := `{"email":"r` + nonce + `-` + strconv.FormatInt(n, 10) + `@example.com","full_name":"Bench User"}`
			return httpDo(ctx, hc, http.MethodPost, o.url+"/users", "application/json", body, o.headers, http.StatusCreated)
		}, nil
	}
	var opts []connect.ClientOption
	switch o.proto {
	case "connect-json":
		opts = append(opts, connect.WithProtoJSON())
	case "connect-get":
		opts = append(opts, connect.WithProtoJSON(), connect.WithHTTPGet())
	case "connect-proto", "connect-create":
	case "grpc":
		opts = append(opts, connect.WithGRPC())
	default:
		return nil, fmt.Errorf("unknown -proto %q", o.proto)
	}
	client := usersv1connect.NewUserServiceClient(hc, o.url, opts...)
	if o.proto == "connect-create" {
		return func(ctx context.Context, _ *rand.Rand) error {
			n := createSeq.Add(1)
			req := connect.NewRequest(&usersv1.CreateUserRequest{
				Email: "c" + nonce + "-" + strconv.FormatInt(n, 10) + "@example.com", FullName: "Bench User",
			})
			addHeaders(req.Header(), o.headers)
			_, err := client.CreateUser(ctx, req)
			return err
		}, nil
	}
	return func(ctx context.Context, rng *rand.Rand) error {
		id := pick(rng)
		req := connect.NewRequest(&usersv1.GetUserRequest{Id: id})
		addHeaders(req.Header(), o.headers)
		resp, err := client.GetUser(ctx, req)
		if err != nil {
			return err
		}
		if resp.Msg.GetUser().GetId() != id {
			return fmt.Errorf("asked for %s, got %q", id, resp.Msg.GetUser().GetId())
		}
		return nil
	}, nil
}

// addHeaders copies the -header headers into a request's.
func addHeaders(dst, src http.Header) {
	for k, vs := range src {
		dst[k] = vs
	}
}

func httpDo(ctx context.Context, hc *http.Client, method, u, ctype, body string, hdr http.Header, want int) error {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	addHeaders(req.Header, hdr)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

type recorder struct {
	mu      sync.Mutex
	lat     []time.Duration
	lag     []time.Duration
	ok      int64
	errs    int64
	dropped int64
	kinds   map[string]int
}

func (r *recorder) record(d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs++
		if r.kinds == nil {
			r.kinds = map[string]int{}
		}
		k := err.Error()
		if ce := new(connect.Error); errors.As(err, &ce) {
			k = ce.Code().String()
		}
		if len(k) > 80 {
			k = k[:80]
		}
		r.kinds[k]++
		return
	}
	r.ok++
	r.lat = append(r.lat, d)
}

func (r *recorder) result(mode, proto string, secs float64) result {
	r.mu.Lock()
	defer r.mu.Unlock()
	slices.Sort(r.lat)
	q := func(p float64) float64 {
		if len(r.lat) == 0 {
			return 0
		}
		i := min(len(r.lat)-1, int(p*float64(len(r.lat))))
		return float64(r.lat[i].Microseconds()) / 1000
	}
	res := result{Mode: mode, Proto: proto, Seconds: secs, OK: r.ok, Errors: r.errs, Dropped: r.dropped,
		RPS: float64(r.ok) / secs, P50ms: q(0.50), P90ms: q(0.90), P99ms: q(0.99), ErrorKind: r.kinds}
	if len(r.lat) > 0 {
		res.MaxMs = float64(r.lat[len(r.lat)-1].Microseconds()) / 1000
	}
	res.Total = completed.Load()
	if len(r.lag) > 0 {
		slices.Sort(r.lag)
		res.LagP99ms = float64(r.lag[min(len(r.lag)-1, len(r.lag)*99/100)].Microseconds()) / 1000
	}
	return res
}

// closedLoop runs o.conc workers back to back for warmup+duration and
// counts what completes inside the measured window.
func closedLoop(o options, calls []caller) result {
	var rec recorder
	start := time.Now()
	measureFrom := start.Add(o.warmup)
	end := measureFrom.Add(o.duration)
	var wg sync.WaitGroup
	for w := range o.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call := calls[w%len(calls)]
			rng := rand.New(rand.NewPCG(uint64(w)+1, uint64(start.UnixNano())))
			for {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
				err := call(ctx, rng)
				cancel()
				completed.Add(1)
				t1 := time.Now()
				if t0.After(measureFrom) && t1.Before(end) {
					rec.record(t1.Sub(t0), err)
				}
			}
		}()
	}
	wg.Wait()
	res := rec.result("closed", o.proto, o.duration.Seconds())
	res.Conc = o.conc
	return res
}

// openLoop starts request i at start+i/rate, each in its own goroutine, and
// measures its latency from that scheduled time.
func openLoop(o options, calls []caller) result {
	var rec recorder
	interval := time.Duration(float64(time.Second) / o.rate)
	total := o.warmup + o.duration
	start := time.Now().Add(10 * time.Millisecond)
	measureFrom := start.Add(o.warmup)
	const maxInFlight = 1024 // beyond this the server is overloaded: count drops
	var inflight atomic.Int64
	var wg sync.WaitGroup
	seed := uint64(start.UnixNano())
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if due.Sub(start) >= total {
			break
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		measured := !due.Before(measureFrom)
		if inflight.Load() >= maxInFlight {
			if measured {
				rec.mu.Lock()
				rec.dropped++
				rec.errs++
				rec.mu.Unlock()
			}
			continue
		}
		inflight.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer inflight.Add(-1)
			if measured {
				lag := time.Since(due)
				rec.mu.Lock()
				rec.lag = append(rec.lag, lag)
				rec.mu.Unlock()
			}
			rng := rand.New(rand.NewPCG(uint64(i), seed))
			ctx, cancel := context.WithDeadline(context.Background(), due.Add(o.timeout))
			err := calls[i%len(calls)](ctx, rng)
			cancel()
			completed.Add(1)
			if measured {
				rec.record(time.Since(due), err)
			}
		}()
	}
	wg.Wait()
	res := rec.result("open", o.proto, o.duration.Seconds())
	res.Rate = o.rate
	return res
}

// runPages walks ListUsers (Connect JSON over HTTP/1.1) and prints the
// page_token that fetches page N, then the time of a single page-1 and
// page-N request.
func runPages(args []string) error {
	fs := flag.NewFlagSet("pages", flag.ExitOnError)
	base := fs.String("url", "http://127.0.0.1:8000", "base URL")
	pages := fs.Int("pages", 1000, "page whose token to print")
	size := fs.Int("size", 50, "page size")
	_ = fs.Parse(args)
	client := usersv1connect.NewUserServiceClient(&http.Client{Timeout: 10 * time.Second}, *base, connect.WithProtoJSON())
	ctx := context.Background()
	tok := ""
	start := time.Now()
	for p := 1; p < *pages; p++ {
		resp, err := client.ListUsers(ctx, connect.NewRequest(&usersv1.ListUsersRequest{PageSize: int32(*size), PageToken: tok}))
		if err != nil {
			return fmt.Errorf("page %d: %w", p, err)
		}
		if resp.Msg.NextPageToken == "" {
			return fmt.Errorf("only %d pages", p)
		}
		tok = resp.Msg.NextPageToken
	}
	walk := time.Since(start)
	fmt.Printf("%s\t%d\t%.1f\n", tok, *pages, walk.Seconds())
	return nil
}

// runProtoset writes the FileDescriptorSet of users.proto (with its imports)
// so ghz can call the bare handler, which serves no reflection.
func runProtoset(args []string) error {
	fs := flag.NewFlagSet("protoset", flag.ExitOnError)
	out := fs.String("o", "users.protoset", "output file")
	_ = fs.Parse(args)
	// Every file users.proto imports, directly or not, dependencies first:
	// ghz refuses a set with a missing import.
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imps := fd.Imports()
		for i := range imps.Len() {
			add(imps.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	add(usersv1.File_users_v1_users_proto)
	b, err := proto.Marshal(set)
	if err != nil {
		return err
	}
	return os.WriteFile(*out, b, 0o644)
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			out = append(out, s)
		}
	}
	return out, sc.Err()
}

func ioReadFull(r io.Reader, b []byte) (int, error) { return io.ReadFull(r, b) }
