//go:build faults

package faults

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/gen/users/v1/usersv1connect"
	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/internal/proctest"
	"github.com/acme/usersd/server"
)

// The documented limits (docs/operations.md, Limits and failure behaviour). They are written out here rather than
// taken from the server package, so that a changed constant in the binary
// fails these tests instead of moving with them.
const (
	maxMessageBytes = 64 << 10 // one Connect/gRPC message
	maxRESTBody     = 1 << 20  // one REST body
	maxHeaderBytes  = 32 << 10 // request headers
	maxPageSize     = 100
	// Go's HTTP servers read a little past MaxHeaderBytes before answering
	// 431: 4 KiB of slack on HTTP/1.1, 32 bytes a field for 10 fields on
	// HTTP/2. "Over the limit" here is past that slack.
	headerSlack = 4<<10 + 1<<10
)

func TestDocumentedLimitsMatchServerConstants(t *testing.T) {
	if server.MaxMessageBytes != maxMessageBytes || server.MaxHeaderBytes != maxHeaderBytes || server.ReadHeaderTimeout != readHeaderTimeout {
		t.Errorf("server limits (message %d, header %d, read header timeout %s) differ from the documented ones (%d, %d, %s)",
			server.MaxMessageBytes, server.MaxHeaderBytes, server.ReadHeaderTimeout, maxMessageBytes, maxHeaderBytes, readHeaderTimeout)
	}
}

// TestLimits checks every size limit at every entry point against one usersd.
func TestLimits(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.URL(t)
	u := startUsersd(t, dbURL, map[string]string{"DB_MAX_CONNS": "6", "RIVER_WORKERS": "2"})

	t.Run("message_size", func(t *testing.T) { testMessageSize(t, u) })
	t.Run("rest_body_size", func(t *testing.T) { testRESTBodySize(t, u) })
	t.Run("gzip_bomb", func(t *testing.T) { testGzipBomb(t, u) })
	t.Run("header_size", func(t *testing.T) { testHeaderSize(t, u) })
	t.Run("page_size_clamped", func(t *testing.T) { testPageSizeClamp(t, u, dbURL) })
}

// connectSizeClients returns, per Connect-family entry point, a client whose
// CreateUser messages serialize to exactly size bytes: proto messages carry an
// unknown bytes field (which protobuf keeps and the server ignores), JSON
// messages are padded with whitespace.
func connectSizeClients(t *testing.T, base string, size int, extra ...connect.ClientOption) []sizedClient {
	var out []sizedClient
	for _, a := range connectAPIs(t, base) {
		opts := append([]connect.ClientOption{}, extra...)
		json := strings.HasPrefix(a.name, "connect-json")
		switch {
		case json:
			opts = append(opts, connect.WithCodec(padJSON{size: size}))
		case strings.HasPrefix(a.name, "grpc-web"):
			opts = append(opts, connect.WithGRPCWeb())
		case strings.HasPrefix(a.name, "grpc"):
			opts = append(opts, connect.WithGRPC())
		}
		out = append(out, sizedClient{name: a.name, json: json, rpc: usersv1connect.NewUserServiceClient(a.hc, base, opts...)})
	}
	return out
}

type sizedClient struct {
	name string
	json bool
	rpc  usersv1connect.UserServiceClient
}

// request returns a valid CreateUser request whose encoding is size bytes.
func (c sizedClient) request(t *testing.T, size int) *usersv1.CreateUserRequest {
	req := newUser("limit")
	if c.json {
		return req // the codec pads it
	}
	return padProto(t, req, size)
}

// padProto adds an unknown length-delimited field so that the message
// serializes to exactly size bytes.
func padProto(t *testing.T, req *usersv1.CreateUserRequest, size int) *usersv1.CreateUserRequest {
	t.Helper()
	const field = 1000
	base := proto.Size(req)
	tag := protowire.SizeTag(field)
	for k := 1; k <= 5; k++ {
		n := size - base - tag - k
		if n >= 0 && protowire.SizeVarint(uint64(n)) == k {
			raw := protowire.AppendTag(nil, field, protowire.BytesType)
			raw = protowire.AppendVarint(raw, uint64(n))
			raw = append(raw, make([]byte, n)...)
			out := proto.Clone(req).(*usersv1.CreateUserRequest)
			out.ProtoReflect().SetUnknown(raw)
			if got := proto.Size(out); got != size {
				t.Fatalf("padded message is %d bytes, want %d", got, size)
			}
			return out
		}
	}
	t.Fatalf("cannot pad a %d-byte message to %d bytes", base, size)
	return nil
}

// padJSON is the protojson codec, with the object padded by whitespace to
// size bytes.
type padJSON struct{ size int }

func (padJSON) Name() string { return "json" }

func (c padJSON) Marshal(v any) ([]byte, error) {
	b, err := protojson.Marshal(v.(proto.Message))
	if err != nil {
		return nil, err
	}
	if c.size == 0 {
		return b, nil
	}
	if len(b) > c.size || len(b) == 0 || b[len(b)-1] != '}' {
		return nil, fmt.Errorf("cannot pad %d bytes of JSON to %d", len(b), c.size)
	}
	out := make([]byte, 0, c.size)
	out = append(out, b[:len(b)-1]...)
	out = append(out, bytes.Repeat([]byte{' '}, c.size-len(b))...)
	return append(out, '}'), nil
}

func (padJSON) Unmarshal(b []byte, v any) error {
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, v.(proto.Message))
}

// testMessageSize: a message of exactly 64 KiB is served, one byte more is
// resource_exhausted, over Connect JSON and proto, gRPC and gRPC-Web, on
// HTTP/1.1 and h2c.
func testMessageSize(t *testing.T, u *proctest.Process) {
	for _, tc := range []struct {
		size int
		want connect.Code
	}{
		{maxMessageBytes, 0},
		{maxMessageBytes + 1, connect.CodeResourceExhausted},
	} {
		for _, c := range connectSizeClients(t, u.URL, tc.size) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			_, err := c.rpc.CreateUser(ctx, connect.NewRequest(c.request(t, tc.size)))
			cancel()
			switch {
			case tc.want == 0 && err != nil:
				t.Errorf("%s: %d-byte message: %v, want success", c.name, tc.size, err)
			case tc.want != 0 && connect.CodeOf(err) != tc.want:
				t.Errorf("%s: %d-byte message: %v, want %v", c.name, tc.size, err, tc.want)
			case tc.want != 0 && !connectResult(err).wire:
				t.Errorf("%s: %d-byte message: %v came from the client, not the server", c.name, tc.size, err)
			}
		}
	}
}

// testRESTBodySize: a 1 MiB REST body (whitespace inside the object) is
// served, one byte more is 413 too_large.
func testRESTBodySize(t *testing.T, u *proctest.Process) {
	for _, a := range restAPIs(t, u.URL) {
		for _, tc := range []struct {
			size int
			want connect.Code
		}{
			{maxRESTBody, 0},
			{maxRESTBody + 1, connect.CodeResourceExhausted},
		} {
			req := newUser("rest-limit")
			head := fmt.Sprintf(`{"email":%q,"full_name":%q`, req.Email, req.FullName)
			body := head + strings.Repeat(" ", tc.size-len(head)-1) + "}"
			if len(body) != tc.size {
				t.Fatalf("body is %d bytes, want %d", len(body), tc.size)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			r := a.rest(ctx, http.MethodPost, "/users", []byte(body))
			cancel()
			switch {
			case tc.want == 0 && (!r.ok() || r.status != http.StatusCreated):
				t.Errorf("%s: %d-byte body: %v, want 201", a.name, tc.size, r)
			case tc.want != 0 && (r.code != tc.want || r.status != http.StatusRequestEntityTooLarge):
				t.Errorf("%s: %d-byte body: %v, want 413 too_large", a.name, tc.size, r)
			}
		}
	}
}

// testGzipBomb: a gzip-compressed message that is small on the wire but
// expands far past the limit is resource_exhausted, and the server does not
// inflate it into memory; one that expands to exactly the limit is served.
func testGzipBomb(t *testing.T, u *proctest.Process) {
	const bomb = 48 << 20 // inflated size; deflate compresses it about 1000:1
	// The compressed message must be under the limit, or the server would
	// reject it before inflating anything and the test would prove nothing.
	if n := gzipSize(make([]byte, bomb)); n >= maxMessageBytes {
		t.Fatalf("a %d-byte bomb compresses to %d bytes, not under the %d-byte limit", bomb, n, maxMessageBytes)
	}
	before := vmHWM(t, u)
	for _, c := range connectSizeClients(t, u.URL, maxMessageBytes, connect.WithSendGzip()) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := c.rpc.CreateUser(ctx, connect.NewRequest(c.request(t, maxMessageBytes)))
		cancel()
		if err != nil {
			t.Errorf("%s: gzip message inflating to exactly %d bytes: %v, want success", c.name, maxMessageBytes, err)
		}
	}
	for _, c := range connectSizeClients(t, u.URL, bomb, connect.WithSendGzip()) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		start := time.Now()
		_, err := c.rpc.CreateUser(ctx, connect.NewRequest(c.request(t, bomb)))
		cancel()
		if connect.CodeOf(err) != connect.CodeResourceExhausted || !connectResult(err).wire {
			t.Errorf("%s: gzip bomb inflating to %d bytes: %v, want resource_exhausted from the server", c.name, bomb, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: gzip bomb took %s to reject", c.name, d)
		}
	}
	after := vmHWM(t, u)
	if grew := after - before; grew > bomb/2 {
		t.Errorf("usersd's peak memory grew by %d MiB while rejecting %d MiB gzip bombs: it inflated them instead of stopping at the limit",
			grew>>20, bomb>>20)
	} else {
		t.Logf("usersd peak RSS %d MiB before the bombs, %d MiB after", before>>20, after>>20)
	}
}

func gzipSize(b []byte) int {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Len()
}

// vmHWM is the peak resident set size of usersd, in bytes.
func vmHWM(t *testing.T, u *proctest.Process) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", u.Pid()))
	if err != nil {
		t.Fatalf("read usersd's /proc status: %v", err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatalf("VmHWM line %q: %v", l, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// testHeaderSize: headers under 32 KiB are served on HTTP/1.1 and h2c;
// headers past it (and past Go's parsing slack) get 431. The headers are
// 1 KiB fields: Go's HTTP/2 server answers a single field longer than the
// whole limit with a COMPRESSION_ERROR connection error instead of a 431.
func testHeaderSize(t *testing.T, u *proctest.Process) {
	const field = 1 << 10
	under := (maxHeaderBytes - 2<<10) / field
	over := (maxHeaderBytes+headerSlack)/field + 1

	// Go's HTTP/2 client will not send headers past the limit the server
	// advertises; a proxy that hides the advertisement lets it try.
	proxy := newSettingsProxy(t, u.Addr)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2Unlimited := newClient(t, &p)

	for _, tc := range []struct {
		name   string
		hc     *http.Client
		base   string
		fields int
		want   int
	}{
		{"h1 under", h1Client(t), u.URL, under, http.StatusOK},
		{"h2c under", h2cClient(t), u.URL, under, http.StatusOK},
		{"h1 over", h1Client(t), u.URL, over, http.StatusRequestHeaderFieldsTooLarge},
		{"h2c over", h2Unlimited, "http://" + proxy, over, http.StatusRequestHeaderFieldsTooLarge},
	} {
		for _, path := range []string{"/livez", "/users?page_size=1", usersv1connect.UserServiceListUsersProcedure} {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			method, body := http.MethodGet, io.Reader(nil)
			if strings.HasPrefix(path, "/users.v1") {
				method, body = http.MethodPost, strings.NewReader("{}")
			}
			req, _ := http.NewRequestWithContext(ctx, method, tc.base+path, body)
			for i := range tc.fields {
				req.Header.Set(fmt.Sprintf("X-Pad-%d", i), strings.Repeat("a", field))
			}
			if body != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := tc.hc.Do(req)
			if err != nil {
				t.Errorf("%s %s (%d KiB of headers): %v, want status %d", tc.name, path, tc.fields, err, tc.want)
				cancel()
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			cancel()
			if resp.StatusCode != tc.want {
				t.Errorf("%s %s (%d KiB of headers): status %d, want %d", tc.name, path, tc.fields, resp.StatusCode, tc.want)
			}
		}
	}
}

// newSettingsProxy forwards TCP connections to target, removing
// SETTINGS_MAX_HEADER_LIST_SIZE from the HTTP/2 SETTINGS frames the server
// sends, so that a Go client does not refuse to send large headers itself.
func newSettingsProxy(t *testing.T, target string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			track(c)
			track(s)
			wg.Go(func() { _, _ = io.Copy(s, c); s.Close() })
			wg.Go(func() { filterSettings(c, s); c.Close() })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// filterSettings copies HTTP/2 frames from src to dst, dropping the
// MAX_HEADER_LIST_SIZE parameter (id 6) from SETTINGS frames.
func filterSettings(dst io.Writer, src io.Reader) {
	hdr := make([]byte, 9)
	for {
		if _, err := io.ReadFull(src, hdr); err != nil {
			return
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		payload := make([]byte, n)
		if _, err := io.ReadFull(src, payload); err != nil {
			return
		}
		if hdr[3] == 0x4 && hdr[4]&0x1 == 0 { // SETTINGS, not ACK
			var kept []byte
			for i := 0; i+6 <= len(payload); i += 6 {
				if binary.BigEndian.Uint16(payload[i:]) != 0x6 {
					kept = append(kept, payload[i:i+6]...)
				}
			}
			payload = kept
			hdr[0], hdr[1], hdr[2] = byte(len(kept)>>16), byte(len(kept)>>8), byte(len(kept))
		}
		if _, err := dst.Write(append(hdr[:9:9], payload...)); err != nil {
			return
		}
	}
}

// testPageSizeClamp: page_size=1000000 returns 100 users and a next page
// token, on every entry point.
func testPageSizeClamp(t *testing.T, u *proctest.Process, dbURL string) {
	conn := dbtest.Connect(t, dbURL)
	if _, err := conn.Exec(t.Context(), `INSERT INTO users (id, email, full_name)
		SELECT gen_random_uuid(), 'clamp-' || i || '@example.com', 'Clamp ' || i FROM generate_series(1, 150) i`); err != nil {
		t.Fatalf("insert users: %v", err)
	}
	for _, a := range allAPIs(t, u.URL) {
		for _, size := range []int32{1000000, 101, 0} {
			want := maxPageSize
			if size == 0 {
				want = 50
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			r := a.list(ctx, size)
			cancel()
			if !r.ok() {
				t.Errorf("%s: page_size=%d: %v", a.name, size, r)
				continue
			}
			if len(r.list.Users) != want || r.list.NextPageToken == "" {
				t.Errorf("%s: page_size=%d: %d users, next token %q; want %d and a token", a.name, size, len(r.list.Users), r.list.NextPageToken, want)
			}
		}
	}
	// A page size past int32 in the REST query is clamped as well.
	for _, a := range restAPIs(t, u.URL) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		r := a.rest(ctx, http.MethodGet, "/users?page_size=99999999999", nil)
		cancel()
		if !r.ok() || len(r.list.Users) != maxPageSize {
			t.Errorf("%s: page_size=99999999999: %v, want %d users", a.name, r, maxPageSize)
		}
	}
}
