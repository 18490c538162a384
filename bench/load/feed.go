package main

// The change feed's subcommands (phase feed of run.sh):
//
//	load feedpage  -url U -proto connect-proto|rest [-size 1000] [-after 0] [-min N]
//	load feedwatch -write U -watch LABEL=U... [-streams 2] [-sse 2] [-rate 100] [-d 10s] -ids FILE
//	load idlewatch -url U -pid PID -pprof U [-streams 500] [-conns 4] [-sse 500]
//
// The watchers speak the wire protocols by hand (Connect's streaming
// envelopes over h2c, Server-Sent Events over HTTP/1.1) rather than
// through connect-go's client: a call returns as soon as the response
// headers arrive, which usersd sends once the watch has caught up, so a
// watcher is known to be subscribed before any write it must see, and
// 1,000 idle ones are known to be open before usersd's memory is read.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
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

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/gen/users/v1/usersv1connect"
)

// --- feedpage: one pager over the whole feed ---------------------------------

type pageResult struct {
	Proto  string `json:"proto"`
	Events int    `json:"events"`
	Pages  int    `json:"pages"`
	Bytes  int64  `json:"bytes"` // response bodies (proto: message size)
	// WireBytes is what the connection carried, so that gzip shows
	// (Connect: every byte read, framing included; REST: the bodies).
	WireBytes int64   `json:"wire_bytes"`
	Seconds   float64 `json:"seconds"`
	EventsPS  float64 `json:"events_per_s"`
	PageP50ms float64 `json:"page_p50_ms"`
	PageP99ms float64 `json:"page_p99_ms"`
	// ClientCPUusPerEvent is the pager's own CPU per event, taken from
	// the CPUs usersd runs on: part of why one entry point reads faster.
	ClientCPUusPerEvent float64 `json:"client_cpu_us_per_event"`
}

// runFeedPage reads the feed from -after to its end, one page at a time,
// each request sent when the previous page has arrived (a consumer that
// catches up), and reports events per second.
func runFeedPage(args []string) error {
	fs := flag.NewFlagSet("feedpage", flag.ExitOnError)
	base := fs.String("url", "http://127.0.0.1:8000", "base URL")
	protoName := fs.String("proto", "connect-proto", "connect-proto (ListUserEvents, h2c) or rest (GET /user-events, HTTP/1.1)")
	size := fs.Int("size", 1000, "page_size")
	after := fs.String("after", "0", "cursor to start after (0: the oldest event kept)")
	minEvents := fs.Int("min", 0, "fail unless at least this many events are read")
	gzip := fs.Bool("gzip", true, "connect-proto: accept gzip, as connect-go's client does unless told not to (usersd compresses responses of 1 KiB and more)")
	_ = fs.Parse(args)

	ctx := context.Background()
	var wire atomic.Int64
	var page func(after string) (n int, next string, bytes int, err error)
	switch *protoName {
	case "connect-proto":
		tr := newTransport(true, 1)
		dial := tr.DialContext
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return countingConn{c, &wire}, nil
		}
		hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		var opts []connect.ClientOption
		if !*gzip {
			opts = append(opts, connect.WithAcceptCompression("gzip", nil, nil))
		}
		client := usersv1connect.NewUserServiceClient(hc, *base, opts...)
		page = func(after string) (int, string, int, error) {
			resp, err := client.ListUserEvents(ctx, connect.NewRequest(&usersv1.ListUserEventsRequest{After: after, PageSize: int32(*size)}))
			if err != nil {
				return 0, "", 0, err
			}
			return len(resp.Msg.Events), resp.Msg.NextAfter, proto.Size(resp.Msg), nil
		}
	case "rest":
		p, err := newH1Pool(*base, 1, nil)
		if err != nil {
			return err
		}
		page = func(after string) (n int, next string, size0 int, err error) {
			path := "/user-events?page_size=" + strconv.Itoa(*size) + "&after=" + url.QueryEscape(after)
			err = p.do(ctx, http.MethodGet, path, "", nil, func(status int, body []byte) error {
				if status != http.StatusOK {
					return fmt.Errorf("status %d: %.200s", status, body)
				}
				// RawMessage: the events are counted, not taken apart; a
				// consumer would decode them, which the CPU column shows
				// only in part.
				var out struct {
					Events    []json.RawMessage `json:"events"`
					NextAfter string            `json:"next_after"`
				}
				if err := json.Unmarshal(body, &out); err != nil {
					return err
				}
				n, next, size0 = len(out.Events), out.NextAfter, len(body)
				wire.Add(int64(len(body))) // uncompressed: the pool asks for no encoding
				return nil
			})
			return n, next, size0, err
		}
	default:
		return fmt.Errorf("unknown -proto %q", *protoName)
	}

	res := pageResult{Proto: *protoName}
	var lat []time.Duration
	cur := *after
	var cpu0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &cpu0)
	start := time.Now()
	for {
		t0 := time.Now()
		n, next, b, err := page(cur)
		if err != nil {
			return fmt.Errorf("page %d after %q: %w", res.Pages+1, cur, err)
		}
		lat = append(lat, time.Since(t0))
		res.Pages++
		res.Events += n
		res.Bytes += int64(b)
		if next == "" {
			return fmt.Errorf("page %d has no next_after", res.Pages)
		}
		cur = next
		if n < *size { // the end of what is servable now
			break
		}
	}
	res.Seconds = time.Since(start).Seconds()
	var cpu1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &cpu1)
	if res.Events < *minEvents {
		return fmt.Errorf("read %d events, want at least %d", res.Events, *minEvents)
	}
	res.EventsPS = float64(res.Events) / res.Seconds
	res.WireBytes = wire.Load()
	res.PageP50ms, res.PageP99ms = quantileMs(lat, 0.50), quantileMs(lat, 0.99)
	if res.Events > 0 {
		cpu := cpu1.Utime.Nano() + cpu1.Stime.Nano() - cpu0.Utime.Nano() - cpu0.Stime.Nano()
		res.ClientCPUusPerEvent = float64(cpu) / 1e3 / float64(res.Events)
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// countingConn counts the bytes read from a connection.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func quantileMs(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[min(len(s)-1, int(q*float64(len(s))))].Microseconds()) / 1000
}

// --- watchers ------------------------------------------------------------------

// receipt is one event as a watcher got it: whose change (user id and the
// etag after it) and when.
type receipt struct {
	key string
	at  time.Time
}

// watcher is one open watch: WatchUserEvents (Connect proto, h2c) or GET
// /user-events/stream (SSE, HTTP/1.1).
type watcher struct {
	target, kind string
	record       bool // keep receipts (the latency run), or only count
	body         io.ReadCloser
	cancel       context.CancelFunc
	done         chan struct{}
	events       atomic.Int64
	closing      atomic.Bool // close was called: a read error is expected
	got          []receipt   // read once done is closed
	err          error       // why reading stopped, read once done is closed
	early        bool        // the watch ended before close: usersd ended it
}

func eventKey(userID, etag string) string { return userID + "|" + etag }

// openWatch starts a watch from now on (after="") and returns once usersd
// has answered with its headers, that is once the watch has caught up and
// is subscribed to the process's hub.
func openWatch(hc *http.Client, base, target, kind string, record bool) (*watcher, error) {
	ctx, cancel := context.WithCancel(context.Background())
	var req *http.Request
	var err error
	switch kind {
	case "cproto":
		msg, _ := proto.Marshal(&usersv1.WatchUserEventsRequest{})
		env := make([]byte, 5, 5+len(msg))
		binary.BigEndian.PutUint32(env[1:], uint32(len(msg)))
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, base+"/users.v1.UserService/WatchUserEvents", bytes.NewReader(append(env, msg...)))
		if err == nil {
			req.Header.Set("Content-Type", "application/connect+proto")
			req.Header.Set("Connect-Protocol-Version", "1")
		}
	case "sse":
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, base+"/user-events/stream", nil)
		if err == nil {
			req.Header.Set("Accept", "text/event-stream")
		}
	default:
		err = fmt.Errorf("unknown watcher kind %q", kind)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("%s watch: status %d: %s", kind, resp.StatusCode, b)
	}
	w := &watcher{target: target, kind: kind, record: record, body: resp.Body, cancel: cancel, done: make(chan struct{})}
	go w.read()
	return w, nil
}

func (w *watcher) read() {
	defer close(w.done)
	if w.kind == "cproto" {
		w.err = w.readConnect()
	} else {
		w.err = w.readSSE()
	}
	w.early = !w.closing.Load()
}

// readConnect reads Connect streaming envelopes: a flags byte, a 32-bit
// length, the message; flag 2 is the end of the stream (a JSON trailer,
// with the error if any).
func (w *watcher) readConnect() error {
	r := bufio.NewReader(w.body)
	var hdr [5]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint32(hdr[1:]))
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		at := time.Now()
		switch {
		case hdr[0]&2 != 0:
			return fmt.Errorf("stream ended: %.300s", buf)
		case hdr[0]&1 != 0:
			return errors.New("compressed message, which was not asked for")
		}
		w.events.Add(1)
		if !w.record {
			continue
		}
		var ev usersv1.UserEvent
		if err := proto.Unmarshal(buf, &ev); err != nil {
			return err
		}
		w.got = append(w.got, receipt{eventKey(ev.GetUserId(), ev.GetUser().GetEtag()), at})
	}
}

// readSSE reads "event: user" events (one JSON object per data line),
// skipping comments (keep-alives); "event: error" ends the watch.
func (w *watcher) readSSE() error {
	sc := bufio.NewScanner(w.body)
	sc.Buffer(make([]byte, 0, 16<<10), 1<<20)
	var event string
	var data []byte
	var at time.Time
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0: // dispatch
			if event == "error" {
				return fmt.Errorf("event: error: %.300s", data)
			}
			if event == "user" && data != nil {
				w.events.Add(1)
				if w.record {
					var ev struct {
						UserID string `json:"user_id"`
						User   *struct {
							ETag string `json:"etag"`
						} `json:"user"`
					}
					if err := json.Unmarshal(data, &ev); err != nil {
						return err
					}
					etag := ""
					if ev.User != nil {
						etag = ev.User.ETag
					}
					w.got = append(w.got, receipt{eventKey(ev.UserID, etag), at})
				}
			}
			event, data = "", nil
		case line[0] == ':':
		case bytes.HasPrefix(line, []byte("event:")):
			event = string(bytes.TrimSpace(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			at = time.Now()
			data = append(data[:0], bytes.TrimPrefix(line[len("data:"):], []byte(" "))...)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.EOF
}

// alive says whether the watch is still open.
func (w *watcher) alive() bool {
	select {
	case <-w.done:
		return false
	default:
		return true
	}
}

// close ends the watch and waits for its reader.
func (w *watcher) close() {
	w.closing.Store(true)
	w.cancel()
	w.body.Close()
	<-w.done
}

// h1Client is an HTTP/1.1 client that opens a connection per concurrent
// request: one per SSE watcher, as browsers and most SSE clients do.
func h1Client() *http.Client {
	return &http.Client{Transport: newTransport(false, 1024)}
}

// h2Client is one cleartext HTTP/2 connection (while its streams stay
// under the server's limit of concurrent streams); dials, when not nil,
// counts the connections it actually opens.
func h2Client(dials ...*atomic.Int64) *http.Client {
	tr := newTransport(true, 1)
	if len(dials) > 0 {
		dial := tr.DialContext
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials[0].Add(1)
			return dial(ctx, network, addr)
		}
	}
	return &http.Client{Transport: tr}
}

// openMany opens n watches of one kind, up to 32 at a time; client(i)
// is the HTTP client of watch i.
func openMany(n int, client func(i int) *http.Client, base, target, kind string, record bool) ([]*watcher, error) {
	out := make([]*watcher, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i], errs[i] = openWatch(client(i), base, target, kind, record)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, w := range out {
			if w != nil {
				w.close()
			}
		}
		return nil, err
	}
	return out, nil
}

// --- feedwatch: latency from a write's response to each watcher ----------------

type watchGroup struct {
	Target   string  `json:"target"`
	Kind     string  `json:"kind"`
	Watchers int     `json:"watchers"`
	Expected int     `json:"expected"` // events each watcher should get, times watchers
	Samples  int     `json:"samples"`
	Missing  int     `json:"missing"`
	Early    int     `json:"early"` // arrived before the write's response: counted as 0 ms
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	Errors   int     `json:"errors"` // watches that ended early
}

type watchResult struct {
	Rate        float64        `json:"rate"`
	Seconds     float64        `json:"seconds"`
	Writes      int            `json:"writes"`
	WriteErrors int            `json:"write_errors"`
	WriteP50ms  float64        `json:"write_p50_ms"`
	WriteP99ms  float64        `json:"write_p99_ms"`
	LagP99ms    float64        `json:"lag_p99_ms"`
	ErrorKinds  map[string]int `json:"error_kinds,omitempty"`
	Groups      []watchGroup   `json:"groups"`
}

type target struct{ label, url string }

// runFeedWatch opens -streams Connect proto and -sse SSE watchers on each
// -watch usersd, then makes -rate changes a second through -write (open
// loop; creates and updates of the -ids users in turn, over Connect proto)
// for -d, and reports per target and kind how long each event took from
// the write's response to the watcher's receipt.
func runFeedWatch(args []string) error {
	fs := flag.NewFlagSet("feedwatch", flag.ExitOnError)
	write := fs.String("write", "http://127.0.0.1:8000", "usersd the changes go through")
	var targets []target
	fs.Func("watch", "LABEL=URL: a usersd to watch (repeatable)", func(s string) error {
		l, u, ok := strings.Cut(s, "=")
		if !ok || l == "" || u == "" {
			return fmt.Errorf("want LABEL=URL, got %q", s)
		}
		targets = append(targets, target{l, u})
		return nil
	})
	streams := fs.Int("streams", 2, "Connect proto watchers per usersd, each on its own h2c connection")
	sse := fs.Int("sse", 2, "SSE watchers per usersd, each on its own HTTP/1.1 connection")
	rate := fs.Float64("rate", 100, "changes per second")
	dur := fs.Duration("d", 10*time.Second, "measured duration")
	warmup := fs.Duration("warmup", time.Second, "changes before measuring (not counted)")
	grace := fs.Duration("grace", 3*time.Second, "how long to wait for the last events")
	idsFile := fs.String("ids", "", "users to update (one id a line); without it, only creates")
	_ = fs.Parse(args)
	if len(targets) == 0 {
		return errors.New("at least one -watch is required")
	}
	var ids []string
	if *idsFile != "" {
		var err error
		if ids, err = readLines(*idsFile); err != nil {
			return err
		}
	}

	var all []*watcher
	defer func() {
		for _, w := range all {
			w.close()
		}
	}()
	for _, t := range targets {
		ws, err := openMany(*streams, func(int) *http.Client { return h2Client() }, t.url, t.label, "cproto", true)
		if err != nil {
			return err
		}
		all = append(all, ws...)
		h1 := h1Client()
		ws, err = openMany(*sse, func(int) *http.Client { return h1 }, t.url, t.label, "sse", true)
		if err != nil {
			return err
		}
		all = append(all, ws...)
	}

	// Two connections, as two writing clients would have: the writes do
	// not all queue on one TCP stream.
	clients := []usersv1connect.UserServiceClient{
		usersv1connect.NewUserServiceClient(&http.Client{Transport: newTransport(true, 64), Timeout: 10 * time.Second}, *write),
		usersv1connect.NewUserServiceClient(&http.Client{Transport: newTransport(true, 64), Timeout: 10 * time.Second}, *write),
	}
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	type written struct {
		key      string
		at       time.Time // the response
		took     time.Duration
		lag      time.Duration
		measured bool
	}
	var mu sync.Mutex
	var writes []written
	errKinds := map[string]int{}
	interval := time.Duration(float64(time.Second) / *rate)
	start := time.Now().Add(10 * time.Millisecond)
	measureFrom := start.Add(*warmup)
	var wg sync.WaitGroup
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if due.Sub(start) >= *warmup+*dur {
			break
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lag := time.Since(due)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c := clients[i%len(clients)]
			var u *usersv1.User
			var err error
			if len(ids) > 0 && i%2 == 1 {
				id := ids[rand.IntN(len(ids))]
				var resp *connect.Response[usersv1.UpdateUserResponse]
				resp, err = c.UpdateUser(ctx, connect.NewRequest(&usersv1.UpdateUserRequest{
					User: &usersv1.User{Id: id, FullName: "Bench Watch " + nonce + " " + strconv.Itoa(i)},
				}))
				if err == nil {
					u = resp.Msg.GetUser()
				}
			} else {
				var resp *connect.Response[usersv1.CreateUserResponse]
				resp, err = c.CreateUser(ctx, connect.NewRequest(&usersv1.CreateUserRequest{
					Email: "w" + nonce + "-" + strconv.Itoa(i) + "@example.com", FullName: "Bench Watch",
				}))
				if err == nil {
					u = resp.Msg.GetUser()
				}
			}
			at := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				k := err.Error()
				if ce := new(connect.Error); errors.As(err, &ce) {
					k = ce.Code().String()
				}
				if !due.Before(measureFrom) {
					errKinds[k]++
				}
				return
			}
			writes = append(writes, written{eventKey(u.GetId(), u.GetEtag()), at, at.Sub(due), lag, !due.Before(measureFrom)})
		}()
	}
	wg.Wait()

	// Every measured write's response time, by event key.
	sent := map[string]time.Time{}
	res := watchResult{Rate: *rate, Seconds: dur.Seconds(), ErrorKinds: errKinds}
	var took, lags []time.Duration
	for _, w := range writes {
		if w.measured {
			sent[w.key] = w.at
			took = append(took, w.took)
			lags = append(lags, w.lag)
		}
	}
	for _, n := range errKinds {
		res.WriteErrors += n
	}
	res.Writes = len(sent)
	res.WriteP50ms, res.WriteP99ms, res.LagP99ms = quantileMs(took, 0.5), quantileMs(took, 0.99), quantileMs(lags, 0.99)

	// The last events: every watcher has every write, or grace is over.
	// want counts the warm-up's writes too, as the watchers' counts do.
	want := int64(len(writes))
	for deadline := time.Now().Add(*grace); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		behind := false
		for _, w := range all {
			if w.alive() && w.events.Load() < want {
				behind = true
			}
		}
		if !behind {
			break
		}
	}
	for _, w := range all {
		w.close()
	}
	groups := map[[2]string]*watchGroup{}
	lat := map[[2]string][]time.Duration{}
	var order [][2]string
	for _, w := range all {
		k := [2]string{w.target, w.kind}
		g := groups[k]
		if g == nil {
			g = &watchGroup{Target: w.target, Kind: w.kind}
			groups[k] = g
			order = append(order, k)
		}
		g.Watchers++
		g.Expected += len(sent)
		if w.early {
			g.Errors++
			fmt.Fprintf(os.Stderr, "load: %s %s watcher ended: %v\n", w.target, w.kind, w.err)
		}
		seen := map[string]bool{}
		for _, r := range w.got {
			at, ok := sent[r.key]
			if !ok || seen[r.key] {
				continue
			}
			seen[r.key] = true
			d := r.at.Sub(at)
			if d < 0 {
				g.Early++
				d = 0
			}
			lat[k] = append(lat[k], d)
		}
		g.Missing += len(sent) - len(seen)
	}
	for _, k := range order {
		g := groups[k]
		l := lat[k]
		g.Samples = len(l)
		g.P50ms, g.P99ms = quantileMs(l, 0.5), quantileMs(l, 0.99)
		g.MaxMs = quantileMs(l, 1)
		res.Groups = append(res.Groups, *g)
	}
	all = nil
	return json.NewEncoder(os.Stdout).Encode(res)
}

// --- idlewatch: usersd's memory per idle watcher -------------------------------

type memPoint struct {
	Watchers  int   `json:"watchers"`
	RSSkB     int64 `json:"rss_kb"`
	HeapInuse int64 `json:"heap_inuse"`
	StackUsed int64 `json:"stack_inuse"`
}

type idleResult struct {
	Streams int        `json:"streams"`
	Conns   int        `json:"conns"` // h2c connections the streams were opened on
	SSE     int        `json:"sse"`
	Base    memPoint   `json:"base"`
	Points  []memPoint `json:"points"` // after the streams, after the SSE watchers too
	Alive   int        `json:"alive"`  // watches still open when the last point was read
}

// runIdleWatch reads usersd's resident memory (VmRSS, after a GC it
// forces through pprof and a pause), opens -streams idle Connect proto
// watches over -conns h2c connections and reads it again, then -sse idle
// SSE watches, one HTTP/1.1 connection each, and reads it a third time.
func runIdleWatch(args []string) error {
	fs := flag.NewFlagSet("idlewatch", flag.ExitOnError)
	base := fs.String("url", "http://127.0.0.1:8000", "usersd")
	pid := fs.Int("pid", 0, "usersd's process id (its /proc/PID/status)")
	pprofURL := fs.String("pprof", "", "usersd's PPROF_BIND as a URL, to force a GC before each reading")
	streams := fs.Int("streams", 500, "idle Connect proto watches")
	conns := fs.Int("conns", 4, "h2c connections the Connect proto watches share (usersd allows 250 streams on one)")
	sse := fs.Int("sse", 500, "idle SSE watches, one HTTP/1.1 connection each")
	settle := fs.Duration("settle", 3*time.Second, "pause after the forced GC, for the scavenger")
	_ = fs.Parse(args)
	if *pid == 0 || *pprofURL == "" {
		return errors.New("-pid and -pprof are required")
	}
	measure := func(n int) (memPoint, error) {
		p := memPoint{Watchers: n}
		if _, _, err := goMem(*pprofURL); err != nil {
			return p, err
		}
		time.Sleep(*settle)
		var err error
		if p.HeapInuse, p.StackUsed, err = goMem(*pprofURL); err != nil {
			return p, err
		}
		// The median of three readings: a poll of the hub or a GC in
		// between moves one, not the median.
		var rs []int64
		for range 3 {
			r, err := vmRSS(*pid)
			if err != nil {
				return p, err
			}
			rs = append(rs, r)
			time.Sleep(300 * time.Millisecond)
		}
		slices.Sort(rs)
		p.RSSkB = rs[1]
		return p, nil
	}

	// One of each first, not measured: the first watch of a kind sets up
	// what every later one shares (the hub, pools, code paths).
	h1 := h1Client()
	for _, kind := range []string{"cproto", "sse"} {
		warm, err := openMany(4, func(int) *http.Client {
			if kind == "sse" {
				return h1
			}
			return h2Client()
		}, *base, "", kind, false)
		if err != nil {
			return err
		}
		for _, w := range warm {
			w.close()
		}
	}
	h1.CloseIdleConnections()
	time.Sleep(500 * time.Millisecond) // the hub notices nobody watches

	res := idleResult{Streams: *streams, SSE: *sse}
	var err error
	if res.Base, err = measure(0); err != nil {
		return err
	}
	var dials atomic.Int64
	h2s := make([]*http.Client, max(1, *conns))
	for i := range h2s {
		h2s[i] = h2Client(&dials)
	}
	var all []*watcher
	defer func() {
		for _, w := range all {
			w.close()
		}
	}()
	// One stream per connection first: until a connection has the server's
	// SETTINGS, the client assumes room for 100 streams and dials more
	// (15 connections instead of 4 here, opening 32 at a time).
	first := min(*streams, len(h2s))
	for _, n := range []int{first, *streams - first} {
		ws, err := openMany(n, func(i int) *http.Client { return h2s[i%len(h2s)] }, *base, "", "cproto", false)
		if err != nil {
			return err
		}
		all = append(all, ws...)
	}
	p, err := measure(len(all))
	if err != nil {
		return err
	}
	res.Points = append(res.Points, p)
	res.Conns = int(dials.Load())
	ws, err := openMany(*sse, func(int) *http.Client { return h1 }, *base, "", "sse", false)
	if err != nil {
		return err
	}
	all = append(all, ws...)
	if p, err = measure(len(all)); err != nil {
		return err
	}
	res.Points = append(res.Points, p)
	for _, w := range all {
		if w.alive() {
			res.Alive++
		}
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// vmRSS is a process's resident set in kB.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// goMem forces a GC in usersd (pprof's heap profile with gc=1) and
// returns its heap and goroutine stacks in use, in bytes, from the
// runtime.MemStats the text profile ends with.
func goMem(pprofURL string) (heap, stack int64, err error) {
	resp, err := http.Get(strings.TrimSuffix(pprofURL, "/") + "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("pprof heap: status %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "# HeapInuse = "); ok {
			heap, _ = strconv.ParseInt(v, 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "# Stack = "); ok { // "inuse / sys"
			f, _, _ := strings.Cut(v, " ")
			stack, _ = strconv.ParseInt(f, 10, 64)
		}
	}
	return heap, stack, sc.Err()
}
