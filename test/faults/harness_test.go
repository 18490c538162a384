//go:build faults

// Package faults runs the built usersd binary (bin/usersd) against a real
// PostgreSQL and checks how it behaves under limits, abusive clients, bad
// input, database faults, pool exhaustion, races and shutdown.
//
// Run it with `make test` (or `make test-faults` under scripts/with-testdb.sh),
// which builds the binary and provides TEST_DATABASE_URL and USERSD_PGCLUSTER.
package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"go.uber.org/goleak"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/gen/users/v1/usersv1connect"
	"github.com/acme/usersd/internal/proctest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startUsersd runs bin/usersd on a free loopback port against dbURL with the
// given extra environment, and waits until it is live and ready.
// Authentication and the client IP limit are off, on purpose: these tests
// flood, starve and cut usersd from one address, and authentication has
// suites of its own (server/auth_test.go, cmd/usersd). The process
// is stopped with SIGTERM when the test ends; its output goes to the test log
// when the test fails, and a panic or an internal error in it fails the test.
func startUsersd(t testing.TB, dbURL string, env map[string]string) *proctest.Process {
	t.Helper()
	full := map[string]string{"HOME": os.Getenv("HOME"), "DATABASE_URL": dbURL, "AUTH_DISABLED": "true", "RATE_LIMIT_IP_RPS": "0"}
	maps.Copy(full, env)
	return proctest.Start(t, proctest.Binary(t), full,
		proctest.WaitReady(),
		proctest.StopGracefully(25*time.Second),
		proctest.NoServerErrors())
}

// HTTP clients.

func h2cClient(t testing.TB) *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return newClient(t, &p)
}

func h1Client(t testing.TB) *http.Client {
	var p http.Protocols
	p.SetHTTP1(true)
	return newClient(t, &p)
}

func newClient(t testing.TB, p *http.Protocols) *http.Client {
	tr := &http.Transport{Protocols: p, MaxIdleConnsPerHost: 64, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// api is one way to call UserService: a Connect-family protocol through the
// generated client, or the REST shim.
type api struct {
	name string
	rpc  usersv1connect.UserServiceClient // nil for REST
	hc   *http.Client
	base string
}

// result is the outcome of one call, in Connect terms for every protocol.
type result struct {
	code   connect.Code // 0 for success
	wire   bool         // the server answered (false: transport failure)
	status int          // HTTP status of a REST call
	err    error
	user   *usersv1.User
	list   *usersv1.ListUsersResponse
}

func (r result) ok() bool { return r.err == nil }

// Err makes result a loadtest.Result.
func (r result) Err() error { return r.err }

func (r result) String() string {
	if r.err == nil {
		return "ok"
	}
	return fmt.Sprintf("%v (wire=%v status=%d): %v", r.code, r.wire, r.status, r.err)
}

// connectAPIs are the Connect-family entry points over both transports.
func connectAPIs(t testing.TB, base string) []api {
	h1, h2 := h1Client(t), h2cClient(t)
	mk := func(name string, hc *http.Client, opts ...connect.ClientOption) api {
		return api{name: name, rpc: usersv1connect.NewUserServiceClient(hc, base, opts...), hc: hc, base: base}
	}
	return []api{
		mk("connect-json/h1", h1, connect.WithProtoJSON()),
		mk("connect-json/h2c", h2, connect.WithProtoJSON()),
		mk("connect-proto/h1", h1),
		mk("connect-proto/h2c", h2),
		mk("grpc/h2c", h2, connect.WithGRPC()),
		mk("grpc-web/h1", h1, connect.WithGRPCWeb()),
		mk("grpc-web/h2c", h2, connect.WithGRPCWeb()),
	}
}

// restAPIs are the REST shim over both transports.
func restAPIs(t testing.TB, base string) []api {
	return []api{
		{name: "rest/h1", hc: h1Client(t), base: base},
		{name: "rest/h2c", hc: h2cClient(t), base: base},
	}
}

// allAPIs is every entry point over every transport it speaks.
func allAPIs(t testing.TB, base string) []api {
	return append(connectAPIs(t, base), restAPIs(t, base)...)
}

// loadAPIs is one of each protocol family, for load generators.
func loadAPIs(t testing.TB, base string) []api {
	h1, h2 := h1Client(t), h2cClient(t)
	return []api{
		{name: "connect-proto/h2c", rpc: usersv1connect.NewUserServiceClient(h2, base), hc: h2, base: base},
		{name: "connect-json/h1", rpc: usersv1connect.NewUserServiceClient(h1, base, connect.WithProtoJSON()), hc: h1, base: base},
		{name: "grpc/h2c", rpc: usersv1connect.NewUserServiceClient(h2, base, connect.WithGRPC()), hc: h2, base: base},
		{name: "grpc-web/h1", rpc: usersv1connect.NewUserServiceClient(h1, base, connect.WithGRPCWeb()), hc: h1, base: base},
		{name: "rest/h1", hc: h1, base: base},
		{name: "rest/h2c", hc: h2, base: base},
	}
}

func (a api) create(ctx context.Context, req *usersv1.CreateUserRequest) result {
	if a.rpc == nil {
		body, _ := json.Marshal(map[string]string{"email": req.Email, "full_name": req.FullName})
		return a.rest(ctx, http.MethodPost, "/users", body)
	}
	resp, err := a.rpc.CreateUser(ctx, connect.NewRequest(req))
	if err != nil {
		return connectResult(err)
	}
	return result{wire: true, user: resp.Msg.User}
}

func (a api) get(ctx context.Context, id string) result {
	if a.rpc == nil {
		return a.rest(ctx, http.MethodGet, "/users/"+id, nil)
	}
	resp, err := a.rpc.GetUser(ctx, connect.NewRequest(&usersv1.GetUserRequest{Id: id}))
	if err != nil {
		return connectResult(err)
	}
	return result{wire: true, user: resp.Msg.User}
}

func (a api) list(ctx context.Context, size int32) result {
	if a.rpc == nil {
		return a.rest(ctx, http.MethodGet, fmt.Sprintf("/users?page_size=%d", size), nil)
	}
	resp, err := a.rpc.ListUsers(ctx, connect.NewRequest(&usersv1.ListUsersRequest{PageSize: size}))
	if err != nil {
		return connectResult(err)
	}
	return result{wire: true, list: resp.Msg}
}

func connectResult(err error) result {
	return result{code: connect.CodeOf(err), wire: connect.IsWireError(err), err: err}
}

// restCodes maps the REST shim's error names to Connect codes and statuses
// (the error table, docs/design.md).
var restCodes = map[string]struct {
	code   connect.Code
	status int
}{
	"validation":     {connect.CodeInvalidArgument, 400},
	"not_found":      {connect.CodeNotFound, 404},
	"conflict":       {connect.CodeAlreadyExists, 409},
	"too_large":      {connect.CodeResourceExhausted, 413},
	"timeout":        {connect.CodeDeadlineExceeded, 504},
	"unavailable":    {connect.CodeUnavailable, 503},
	"internal_error": {connect.CodeInternal, 500},
}

type restUser struct {
	ID       string `json:"id"`
	Email    string `json:"email"`
	FullName string `json:"full_name"`
}

// rest sends one REST request and classifies the answer by the error table.
func (a api) rest(ctx context.Context, method, path string, body []byte) result {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, bytes.NewReader(body))
	if err != nil {
		return result{code: connect.CodeInternal, err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	} else {
		req.Body, req.ContentLength = nil, 0
	}
	return restDo(a.hc, req)
}

func restDo(hc *http.Client, req *http.Request) result {
	resp, err := hc.Do(req)
	if err != nil {
		code := connect.CodeUnavailable
		if errors.Is(err, context.DeadlineExceeded) {
			code = connect.CodeDeadlineExceeded
		} else if errors.Is(err, context.Canceled) {
			code = connect.CodeCanceled
		}
		return result{code: code, err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return result{code: connect.CodeUnavailable, status: resp.StatusCode, err: fmt.Errorf("read body: %w", err)}
	}
	r := result{wire: true, status: resp.StatusCode}
	if resp.StatusCode < 300 {
		var u restUser
		var l struct {
			Users         []restUser `json:"users"`
			NextPageToken string     `json:"next_page_token"`
		}
		if strings.HasSuffix(req.URL.Path, "/users") && req.Method == http.MethodGet {
			if err := json.Unmarshal(b, &l); err != nil {
				r.code, r.err = connect.CodeInternal, fmt.Errorf("status %d, undecodable list %q", resp.StatusCode, b)
				return r
			}
			r.list = &usersv1.ListUsersResponse{NextPageToken: l.NextPageToken}
			for _, u := range l.Users {
				r.list.Users = append(r.list.Users, &usersv1.User{Id: u.ID, Email: u.Email, FullName: u.FullName})
			}
			return r
		}
		if err := json.Unmarshal(b, &u); err != nil || u.ID == "" {
			r.code, r.err = connect.CodeInternal, fmt.Errorf("status %d, undecodable user %q", resp.StatusCode, b)
			return r
		}
		r.user = &usersv1.User{Id: u.ID, Email: u.Email, FullName: u.FullName}
		return r
	}
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(b, &e)
	want, known := restCodes[e.Error]
	switch {
	case !known:
		r.code = connect.CodeUnknown
		if resp.StatusCode == 431 {
			r.code = connect.CodeResourceExhausted
		}
		r.err = fmt.Errorf("REST status %d with body %q", resp.StatusCode, b)
	case want.status != resp.StatusCode:
		r.code = connect.CodeUnknown
		r.err = fmt.Errorf("REST error %q came with status %d, want %d", e.Error, resp.StatusCode, want.status)
	default:
		r.code = want.code
		r.err = fmt.Errorf("REST %d %s: %s", resp.StatusCode, e.Error, e.Message)
	}
	return r
}

// health asks both readiness endpoints: GET /healthz and gRPC health.
type healthProbe struct {
	healthz int               // HTTP status of /healthz, 0 on transport error
	grpc    grpchealth.Status // gRPC health status, StatusUnknown on error
}

func probeHealth(ctx context.Context, hc *http.Client, base string) healthProbe {
	var p healthProbe
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil); err == nil {
		if resp, err := hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			p.healthz = resp.StatusCode
		}
	}
	hcl := grpchealth.NewClient(hc, base, connect.WithGRPC())
	if resp, err := hcl.Check(ctx, &grpchealth.CheckRequest{}); err == nil {
		p.grpc = resp.Status
	}
	return p
}

func (p healthProbe) serving() bool {
	return p.healthz == http.StatusOK && p.grpc == grpchealth.StatusServing
}

func (p healthProbe) notServing() bool {
	return p.healthz == http.StatusServiceUnavailable && p.grpc == grpchealth.StatusNotServing
}

// uniq makes emails unique within the run.
var uniq atomic.Int64

// newUser returns a valid CreateUser request with a unique email.
func newUser(prefix string) *usersv1.CreateUserRequest {
	seq := uniq.Add(1)
	return &usersv1.CreateUserRequest{
		Email:    fmt.Sprintf("%s-%d-%d@example.com", prefix, time.Now().UnixNano(), seq),
		FullName: "Fault Test " + prefix,
	}
}
