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
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testServer is usersd's handler on a real loopback listener speaking
// HTTP/1.1 and h2c, over a fresh database, with authentication against a
// development issuer on its own loopback port.
type testServer struct {
	URL    string
	DB     *store.DB
	Issuer *devissuer.Issuer // nil when authentication is off
	Admin  string            // a token with users:read and users:write ("" when authentication is off)
	Logs   *proctest.SyncBuffer
	proxy  *dbtest.Proxy // non-nil when started with a cuttable database link
}

type setupOpts struct {
	proxy     bool           // route the pool through a TCP proxy that the test can cut
	authOff   bool           // AUTH_DISABLED, on purpose: the test is about something else
	issuerOff bool           // the issuer is down when the server starts
	opts      server.Options // more options (rate limits, ...); Logger, RequestTimeout and Verifier are set here
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
	ctx := context.Background()
	dbURL := dbtest.URL(t)
	ts := &testServer{}
	if o.proxy {
		ts.proxy = dbtest.NewProxy(t, dbURL)
		dbURL = ts.proxy.URL
	}
	db, err := store.Open(ctx, store.Config{URL: dbURL, MaxConns: 4, MinConns: 0, AcquireTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ts.DB = db
	// An insert-only River client: creates enqueue their welcome job for real.
	rc, err := river.NewClient(riverpgxv5.New(db.Pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
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
		ts.Admin = ts.Issuer.Token("admin", server.ScopeRead, server.ScopeWrite)
		opts.WebAuth.Issuer = ts.Issuer.URL()
	}
	users := store.NewUsers(db, jobs.WelcomeHooks(rc))
	h := newHandler(t, users, server.NewHealth(db.Ping), opts)
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
		db.Close()
	})
	ts.URL = "http://" + ln.Addr().String()
	return ts
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

func newHandler(t *testing.T, users *store.Users, health *server.Health, opts server.Options) http.Handler {
	t.Helper()
	h, err := server.New(users, health, opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
