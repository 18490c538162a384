//go:build cluster

package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/gen/users/v1/usersv1connect"
	"github.com/acme/usersd/internal/loadtest"
)

// reqIDKey carries a call's X-Request-Id in its context.
type reqIDKey struct{}

// stamp sends the bearer token and the call's X-Request-Id with every
// request, on every protocol (gRPC gets them as metadata).
type stamp struct {
	token string
	base  http.RoundTripper
}

func (s stamp) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+s.token)
	if id, ok := r.Context().Value(reqIDKey{}).(string); ok {
		r.Header.Set("X-Request-Id", id)
	}
	// No replay of a request body: Go's HTTP/2 transport resends a request
	// whose stream was refused (REFUSED_STREAM) when it can rewind the body.
	// HAProxy refuses the stream of a write that was in flight on a replica
	// that died, although that write may have committed there; a silent
	// replay would hide the failure from the suite (or turn it into an
	// already_exists). Without GetBody the failure reaches the caller, as it
	// does over HTTP/1.1, where Go never replays a POST or PATCH.
	r.GetBody = nil
	return s.base.RoundTrip(r)
}

// newClient is an HTTP/1.1 or h2c (prior knowledge) client. Idle connections
// are closed after 30 s, before HAProxy's 60 s keep-alive timeout, so no
// request is sent on a connection HAProxy is closing.
func newClient(t testing.TB, token string, h2c bool) *http.Client {
	var p http.Protocols
	if h2c {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	tr := &http.Transport{
		Protocols:           &p,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: stamp{token: token, base: tr}}
}

// entry is one way to call UserService through HAProxy: a Connect-family
// protocol through the generated client, or the REST shim (rpc nil).
type entry struct {
	name string
	rpc  usersv1connect.UserServiceClient
	hc   *http.Client
	base string
}

// entries is every protocol over every transport it speaks: REST, Connect
// JSON (POST and GET), Connect proto, gRPC and gRPC-Web, over HTTP/1.1 and h2c.
func entries(t testing.TB, base, token string) []entry {
	h1, h2 := newClient(t, token, false), newClient(t, token, true)
	mk := func(name string, hc *http.Client, opts ...connect.ClientOption) entry {
		return entry{name: name, rpc: usersv1connect.NewUserServiceClient(hc, base, opts...), hc: hc, base: base}
	}
	return []entry{
		{name: "rest/h1", hc: h1, base: base},
		{name: "rest/h2c", hc: h2, base: base},
		mk("connect-json/h1", h1, connect.WithProtoJSON()),
		mk("connect-json/h2c", h2, connect.WithProtoJSON()),
		mk("connect-get/h1", h1, connect.WithProtoJSON(), connect.WithHTTPGet()),
		mk("connect-proto/h1", h1),
		mk("connect-proto/h2c", h2),
		mk("grpc/h2c", h2, connect.WithGRPC()),
		mk("grpc-web/h1", h1, connect.WithGRPCWeb()),
		mk("grpc-web/h2c", h2, connect.WithGRPCWeb()),
	}
}

// call is one request of a load run.
type call = loadtest.Call[outcome]

// outcome is what became of a call. err is nil for success: every call of
// the load is valid and must succeed.
type outcome struct {
	err    error
	reqID  string
	email  string // create
	userID string // create (on success), get, update, delete
	etag   string // create and update, on success: the user's version they wrote
	// sends is how many times the client's transport sent the request (a
	// connection taken for it, httptrace.GotConn): more than one means it
	// replayed the request by itself, which the suite counts as a retry.
	sends int
}

func (o outcome) Err() error { return o.err }

func (o outcome) String() string {
	s := fmt.Sprintf("[%s] %v", o.reqID, o.err)
	if o.sends > 1 {
		s += fmt.Sprintf(" (sent %d times by the transport)", o.sends)
	}
	return s
}

var seq atomic.Int64

// do runs one operation on e and returns it timed.
func (e entry) do(ctx context.Context, op, userID string) call {
	o := outcome{userID: userID, reqID: fmt.Sprintf("%s-%s-%d", strings.ReplaceAll(e.name, "/", "-"), op, seq.Add(1))}
	ctx = context.WithValue(ctx, reqIDKey{}, o.reqID)
	var sends atomic.Int32
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { sends.Add(1) }})
	return loadtest.Do(e.name, op, func() outcome {
		switch op {
		case "create":
			o.email = fmt.Sprintf("c%d-%d@example.com", time.Now().UnixNano(), seq.Add(1))
			o.userID, o.etag, o.err = e.create(ctx, o.email, "Cluster Test")
		case "get":
			o.err = e.get(ctx, userID)
		case "list":
			o.err = e.list(ctx)
		case "update":
			o.etag, o.err = e.update(ctx, userID, fmt.Sprintf("Cluster Test %d", seq.Add(1)))
		case "delete":
			o.err = e.delete(ctx, userID)
		default:
			panic(op)
		}
		o.sends = int(sends.Load())
		return o
	})
}

// restUser is the part of a REST user the load keeps.
type restUser struct {
	ID   string `json:"id"`
	ETag string `json:"etag"`
}

func (e entry) create(ctx context.Context, email, name string) (id, etag string, err error) {
	if e.rpc == nil {
		var u restUser
		err := e.rest(ctx, http.MethodPost, "/users", map[string]string{"email": email, "full_name": name}, http.StatusCreated, &u)
		if err == nil && (u.ID == "" || u.ETag == "") {
			err = fmt.Errorf("REST create answered id %q, etag %q", u.ID, u.ETag)
		}
		return u.ID, u.ETag, err
	}
	resp, err := e.rpc.CreateUser(ctx, connect.NewRequest(&usersv1.CreateUserRequest{Email: email, FullName: name}))
	if err != nil {
		return "", "", rpcErr(err)
	}
	return resp.Msg.GetUser().GetId(), resp.Msg.GetUser().GetEtag(), nil
}

func (e entry) get(ctx context.Context, id string) error {
	if e.rpc == nil {
		return e.rest(ctx, http.MethodGet, "/users/"+id, nil, http.StatusOK, nil)
	}
	resp, err := e.rpc.GetUser(ctx, connect.NewRequest(&usersv1.GetUserRequest{Id: id}))
	if err != nil {
		return rpcErr(err)
	}
	if resp.Msg.GetUser().GetId() != id {
		return fmt.Errorf("GetUser(%s) answered user %q", id, resp.Msg.GetUser().GetId())
	}
	return nil
}

func (e entry) list(ctx context.Context) error {
	if e.rpc == nil {
		return e.rest(ctx, http.MethodGet, "/users?page_size=5", nil, http.StatusOK, nil)
	}
	_, err := e.rpc.ListUsers(ctx, connect.NewRequest(&usersv1.ListUsersRequest{PageSize: 5}))
	return rpcErr(err)
}

func (e entry) update(ctx context.Context, id, name string) (etag string, err error) {
	if e.rpc == nil {
		var u restUser
		err := e.rest(ctx, http.MethodPatch, "/users/"+id, map[string]string{"full_name": name}, http.StatusOK, &u)
		return u.ETag, err
	}
	resp, err := e.rpc.UpdateUser(ctx, connect.NewRequest(&usersv1.UpdateUserRequest{
		User:       &usersv1.User{Id: id, FullName: name},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"full_name"}},
	}))
	if err != nil {
		return "", rpcErr(err)
	}
	return resp.Msg.GetUser().GetEtag(), nil
}

func (e entry) delete(ctx context.Context, id string) error {
	if e.rpc == nil {
		return e.rest(ctx, http.MethodDelete, "/users/"+id, nil, http.StatusNoContent, nil)
	}
	_, err := e.rpc.DeleteUser(ctx, connect.NewRequest(&usersv1.DeleteUserRequest{Id: id}))
	return rpcErr(err)
}

func rpcErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w (wire error: %v)", err, connect.IsWireError(err))
}

// errNoAnswer marks a call that got no answer at all: its connection or
// stream ended first.
var errNoAnswer = errors.New("no answer")

// noAnswer reports whether err says the request got no answer, as opposed
// to an error status from HAProxy or usersd.
func noAnswer(err error) bool {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return !connect.IsWireError(ce) // a client-side error: connection or stream lost
	}
	return errors.Is(err, errNoAnswer)
}

// rest sends one REST request and fails unless the status is want.
func (e entry) rest(ctx context.Context, method, path string, body any, want int, into any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("status %d, reading the body: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("REST status %d, want %d: %.200q", resp.StatusCode, want, b)
	}
	if into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			return fmt.Errorf("REST status %d, undecodable body %.200q", resp.StatusCode, b)
		}
	}
	return nil
}

// startLoad keeps one worker per entry point busy until stopped, each
// making one call per interval: a create (40%), a get (25%), an update
// (15%) or a delete (5%) of a user it created, or a list (15%). The
// operation is drawn at random, so which replica HAProxy's round robin
// picks for a call does not depend on its kind. Every call is recorded, and
// a user's calls come from one worker, one after the other: the load knows
// the order of each user's changes.
func startLoad(t testing.TB, es []entry, interval time.Duration) *loadtest.Load[outcome] {
	mine := make([][]string, len(es)) // the users each worker created and has not deleted
	return loadtest.Start(t, loadtest.Config{Workers: len(es), Interval: interval}, func(w *loadtest.Worker[outcome]) {
		e := es[w.ID]
		op, id := "create", ""
		switch n := rand.IntN(100); {
		case n < 40 || len(mine[w.ID]) == 0:
		case n < 65:
			op, id = "get", mine[w.ID][rand.IntN(len(mine[w.ID]))]
		case n < 80:
			op, id = "update", mine[w.ID][rand.IntN(len(mine[w.ID]))]
		case n < 85:
			// Never used again, whatever the outcome: a delete that failed
			// may have committed (kill -9).
			i := rand.IntN(len(mine[w.ID]))
			op, id = "delete", mine[w.ID][i]
			mine[w.ID] = slices.Delete(mine[w.ID], i, i+1)
		default:
			op = "list"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		c := e.do(ctx, op, id)
		cancel()
		w.Record(c)
		if op == "create" && c.Result.err == nil {
			mine[w.ID] = append(mine[w.ID], c.Result.userID)
		}
	})
}

// replayed are the calls the client's transport sent more than once.
func replayed(calls []call) []call {
	var out []call
	for _, c := range calls {
		if c.Result.sends > 1 {
			out = append(out, c)
		}
	}
	return out
}
