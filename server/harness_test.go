package server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"go.uber.org/goleak"

	"github.com/acme/usersd/auth"
	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/internal/devissuer"
	"github.com/acme/usersd/internal/logtest"
	"github.com/acme/usersd/internal/proctest"
	"github.com/acme/usersd/jobs"
	"github.com/acme/usersd/server"
	"github.com/acme/usersd/store"
	"github.com/acme/usersd/users"
	"github.com/acme/usersd/users/userstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testServer is usersd's handler on a real loopback listener speaking
// HTTP/1.1 and h2c, over a fresh database (or the in-memory store), with
// authentication against a development issuer on its own loopback port.
type testServer struct {
	URL    string
	DB     *store.DB         // nil over the in-memory store
	Memory *userstest.Memory // the in-memory store, when it is the one
	Issuer *devissuer.Issuer // nil when authentication is off
	Admin  string            // a token with users:read and users:write ("" when authentication is off)
	Logs   *proctest.SyncBuffer
	proxy  *dbtest.Proxy // non-nil when started with a cuttable database link
}

type setupOpts struct {
	memory    bool                          // the in-memory store: the test is about the transport, and needs no PostgreSQL
	hooks     func(store.Hooks) store.Hooks // wraps the store's hooks (the welcome jobs), to inject delays and failures
	proxy     bool                          // route the pool through a TCP proxy that the test can cut
	authOff   bool                          // AUTH_DISABLED, on purpose: the test is about something else
	issuerOff bool                          // the issuer is down when the server starts
	opts      server.Options                // more options (rate limits, ...); Logger, RequestTimeout and Verifier are set here
}

// audience is the aud the test servers require.
const audience = "usersd-test"

// testVerifier starts a development issuer and a verifier of its tokens
// (waiting until it has the keys).
func testVerifier(t *testing.T, log *slog.Logger) (*devissuer.Issuer, *auth.Verifier) {
	t.Helper()
	iss := devissuer.StartTest(t, audience, "RS256")
	v := newVerifier(t, iss, log)
	deadline := time.Now().Add(10 * time.Second)
	for !v.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("the verifier did not load the issuer's keys within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return iss, v
}

func newVerifier(t *testing.T, iss *devissuer.Issuer, log *slog.Logger) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(auth.Config{Issuer: iss.URL(), Audience: audience, Logger: log, RetryMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func setup(t *testing.T, o setupOpts) *testServer {
	t.Helper()
	ts := &testServer{}
	ts.Logs = &proctest.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(io.MultiWriter(ts.Logs, logtest.Writer(t)), nil))
	opts := o.opts
	opts.Logger, opts.RequestTimeout = log, 5*time.Second
	switch {
	case o.authOff:
	case o.issuerOff:
		ts.Issuer = devissuer.StartTest(t, audience, "RS256")
		ts.Issuer.SetDown(true)
		opts.Verifier = newVerifier(t, ts.Issuer, log)
	default:
		ts.Issuer, opts.Verifier = testVerifier(t, log)
	}
	if ts.Issuer != nil {
		ts.Admin = ts.Issuer.Token("admin", users.ScopeRead, users.ScopeWrite)
		opts.WebAuth.Issuer = ts.Issuer.URL()
	}
	var h http.Handler
	if o.memory {
		ts.Memory = userstest.NewMemory()
		h = newHandler(t, ts.Memory, okHealth(), opts)
	} else {
		ts.DB, ts.proxy = openDB(t, o.proxy)
		// An insert-only River client: creates enqueue their welcome job for real.
		rc, err := river.NewClient(riverpgxv5.New(ts.DB.Pool), &river.Config{})
		if err != nil {
			t.Fatal(err)
		}
		hooks := jobs.WelcomeHooks(rc)
		if o.hooks != nil {
			hooks = o.hooks(hooks)
		}
		h = newHandler(t, store.NewUsers(ts.DB, hooks), server.NewHealth(ts.DB.Ping), opts)
	}
	ts.URL = serve(t, h, log)
	return ts
}

// openDB opens a small pool on a fresh database, through a TCP proxy the
// test can cut when proxy is set; it closes when the test ends.
func openDB(t *testing.T, proxy bool) (*store.DB, *dbtest.Proxy) {
	t.Helper()
	dbURL := dbtest.URL(t)
	var p *dbtest.Proxy
	if proxy {
		p = dbtest.NewProxy(t, dbURL)
		dbURL = p.URL
	}
	db, err := store.Open(context.Background(), store.Config{URL: dbURL, MaxConns: 4, MinConns: 0, AcquireTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db, p
}

// serve runs h on a loopback listener speaking HTTP/1.1 and h2c until the
// test ends, and returns its base URL.
func serve(t *testing.T, h http.Handler, log *slog.Logger) string {
	t.Helper()
	srv := server.NewHTTPServer(h, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return "http://" + ln.Addr().String()
}

// h2cClient speaks cleartext HTTP/2 with prior knowledge.
func h2cClient(t *testing.T) *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// h1Client speaks HTTP/1.1.
func h1Client(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// newHandler is server.New over st, wired as usersd wires it (but for a
// quicker feed poll, and webhooks to loopback allowed).
func newHandler(t *testing.T, st users.Storage, health *server.Health, opts server.Options) http.Handler {
	t.Helper()
	svc := users.New(st, users.Options{NoteUser: server.NoteUser, FeedPoll: 20 * time.Millisecond, AllowPrivateWebhooks: true})
	t.Cleanup(svc.Close)
	h, err := server.New(svc, health, opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// okHealth is readiness without a database: always ready.
func okHealth() *server.Health { return server.NewHealth(func(context.Context) error { return nil }) }
