package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/gen/users/v1/usersv1connect"
	"github.com/acme/usersd/internal/devissuer"
	"github.com/acme/usersd/restjson"
)

// apiClient is one way of calling the users API. Errors come back as
// *callError so every client can be checked against one table.
type apiClient interface {
	create(ctx context.Context, req *usersv1.CreateUserRequest) (*usersv1.User, error)
	get(ctx context.Context, id string) (*usersv1.User, error)
	list(ctx context.Context, size int32, token string) (*usersv1.ListUsersResponse, error)
	byEmail(ctx context.Context, email string) ([]*usersv1.User, error)
	update(ctx context.Context, req *usersv1.UpdateUserRequest) (*usersv1.User, error)
	remove(ctx context.Context, id, etag string) error
}

// callError is a failed call, seen the same way from every client.
type callError struct {
	code  connect.Code
	field string // the BadRequest field violation, for invalid_argument
	msg   string
}

func (e *callError) Error() string { return fmt.Sprintf("%v (field %q): %s", e.code, e.field, e.msg) }

// clients returns the seven clients of the table tests, all on ts, with
// ts's admin token.
// clientNames are the keys of what clients returns.
var clientNames = []string{"connect-get", "connect-json", "connect-proto", "grpc", "grpc-go", "grpc-web", "rest"}

func clients(t *testing.T, ts *testServer) map[string]apiClient {
	return clientsAs(t, ts, ts.Admin)
}

// clientsAs returns the seven clients sending token ("" sends none).
func clientsAs(t *testing.T, ts *testServer, token string) map[string]apiClient {
	h2, h1 := h2cClient(t), h1Client(t)
	// No client-wide timeout: the calls carry their test's deadline, and a
	// watch lasts as long as its test reads it (a timeout would leave a
	// timer goroutine behind every abandoned stream).
	h2.Timeout, h1.Timeout = 0, 0
	dialOpts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if token != "" {
		h2.Transport = devissuer.Bearer{Token: token, Base: h2.Transport}
		h1.Transport = devissuer.Bearer{Token: token, Base: h1.Transport}
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearerCreds(token)))
	}
	conn, err := grpc.NewClient(strings.TrimPrefix(ts.URL, "http://"), dialOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	all := map[string]apiClient{
		"connect-json":  connectClient{usersv1connect.NewUserServiceClient(h2, ts.URL, connect.WithProtoJSON())},
		"connect-proto": connectClient{usersv1connect.NewUserServiceClient(h2, ts.URL)},
		"connect-get":   connectClient{usersv1connect.NewUserServiceClient(h1, ts.URL, connect.WithHTTPGet(), connect.WithProtoJSON())},
		"grpc":          connectClient{usersv1connect.NewUserServiceClient(h2, ts.URL, connect.WithGRPC())},
		"grpc-web":      connectClient{usersv1connect.NewUserServiceClient(h2, ts.URL, connect.WithGRPCWeb())},
		"grpc-go":       grpcClient{conn},
		"rest":          restClient{h1, ts.URL, openAPIValidator(t)},
	}
	if got := slices.Sorted(maps.Keys(all)); !slices.Equal(got, clientNames) {
		t.Fatalf("clients %v, but clientNames lists %v", got, clientNames)
	}
	return all
}

// bearerCreds sends a bearer token with every grpc-go call, over cleartext
// too (the test server speaks h2c).
type bearerCreds string

func (b bearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearerCreds) RequireTransportSecurity() bool { return false }

type connectClient struct {
	c usersv1connect.UserServiceClient
}

func (c connectClient) create(ctx context.Context, req *usersv1.CreateUserRequest) (*usersv1.User, error) {
	resp, err := c.c.CreateUser(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, fromConnect(err)
	}
	return resp.Msg.User, nil
}

func (c connectClient) get(ctx context.Context, id string) (*usersv1.User, error) {
	resp, err := c.c.GetUser(ctx, connect.NewRequest(&usersv1.GetUserRequest{Id: id}))
	if err != nil {
		return nil, fromConnect(err)
	}
	return resp.Msg.User, nil
}

func (c connectClient) list(ctx context.Context, size int32, token string) (*usersv1.ListUsersResponse, error) {
	resp, err := c.c.ListUsers(ctx, connect.NewRequest(&usersv1.ListUsersRequest{PageSize: size, PageToken: token}))
	if err != nil {
		return nil, fromConnect(err)
	}
	return resp.Msg, nil
}

func (c connectClient) byEmail(ctx context.Context, email string) ([]*usersv1.User, error) {
	resp, err := c.c.ListUsers(ctx, connect.NewRequest(&usersv1.ListUsersRequest{Email: email}))
	if err != nil {
		return nil, fromConnect(err)
	}
	return resp.Msg.Users, nil
}

func (c connectClient) update(ctx context.Context, req *usersv1.UpdateUserRequest) (*usersv1.User, error) {
	resp, err := c.c.UpdateUser(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, fromConnect(err)
	}
	return resp.Msg.User, nil
}

func (c connectClient) remove(ctx context.Context, id, etag string) error {
	_, err := c.c.DeleteUser(ctx, connect.NewRequest(&usersv1.DeleteUserRequest{Id: id, Etag: etag}))
	return fromConnect(err)
}

func fromConnect(err error) error {
	if err == nil {
		return nil
	}
	ce := new(connect.Error)
	if !errors.As(err, &ce) {
		return err
	}
	out := &callError{code: ce.Code(), msg: ce.Message()}
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if br, ok := v.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
				out.field = br.FieldViolations[0].Field
			}
		}
	}
	return out
}

// grpcClient is an independent gRPC implementation (grpc-go) calling the
// generated messages directly.
type grpcClient struct{ conn *grpc.ClientConn }

func (c grpcClient) invoke(ctx context.Context, method string, req, resp proto.Message) error {
	return grpcError(c.conn.Invoke(ctx, method, req, resp))
}

// grpcError is a grpc-go error as a *callError.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	st := status.Convert(err)
	out := &callError{code: connect.Code(st.Code()), msg: st.Message()}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
			out.field = br.FieldViolations[0].Field
		}
	}
	return out
}

func (c grpcClient) create(ctx context.Context, req *usersv1.CreateUserRequest) (*usersv1.User, error) {
	resp := new(usersv1.CreateUserResponse)
	if err := c.invoke(ctx, usersv1connect.UserServiceCreateUserProcedure, req, resp); err != nil {
		return nil, err
	}
	return resp.User, nil
}

func (c grpcClient) get(ctx context.Context, id string) (*usersv1.User, error) {
	resp := new(usersv1.GetUserResponse)
	if err := c.invoke(ctx, usersv1connect.UserServiceGetUserProcedure, &usersv1.GetUserRequest{Id: id}, resp); err != nil {
		return nil, err
	}
	return resp.User, nil
}

func (c grpcClient) list(ctx context.Context, size int32, token string) (*usersv1.ListUsersResponse, error) {
	resp := new(usersv1.ListUsersResponse)
	err := c.invoke(ctx, usersv1connect.UserServiceListUsersProcedure, &usersv1.ListUsersRequest{PageSize: size, PageToken: token}, resp)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (c grpcClient) byEmail(ctx context.Context, email string) ([]*usersv1.User, error) {
	resp := new(usersv1.ListUsersResponse)
	if err := c.invoke(ctx, usersv1connect.UserServiceListUsersProcedure, &usersv1.ListUsersRequest{Email: email}, resp); err != nil {
		return nil, err
	}
	return resp.Users, nil
}

func (c grpcClient) update(ctx context.Context, req *usersv1.UpdateUserRequest) (*usersv1.User, error) {
	resp := new(usersv1.UpdateUserResponse)
	if err := c.invoke(ctx, usersv1connect.UserServiceUpdateUserProcedure, req, resp); err != nil {
		return nil, err
	}
	return resp.User, nil
}

func (c grpcClient) remove(ctx context.Context, id, etag string) error {
	return c.invoke(ctx, usersv1connect.UserServiceDeleteUserProcedure, &usersv1.DeleteUserRequest{Id: id, Etag: etag}, new(usersv1.DeleteUserResponse))
}

// restClient calls the JSON shim with plain net/http, and checks every
// request it sends and every response it gets against the OpenAPI
// document the server serves.
type restClient struct {
	hc      *http.Client
	base    string
	openAPI *openAPICheck
}

// restCodes is the error table (docs/design.md) read backwards: REST status and
// error name to the Connect code.
var restCodes = map[string]struct {
	status int
	code   connect.Code
}{
	"validation":          {400, connect.CodeInvalidArgument},
	"not_found":           {404, connect.CodeNotFound},
	"conflict":            {409, connect.CodeAlreadyExists},
	"too_large":           {413, connect.CodeResourceExhausted},
	"timeout":             {504, connect.CodeDeadlineExceeded},
	"unavailable":         {503, connect.CodeUnavailable},
	"unauthenticated":     {401, connect.CodeUnauthenticated},
	"forbidden":           {403, connect.CodePermissionDenied},
	"rate_limited":        {429, connect.CodeResourceExhausted},
	"precondition_failed": {412, connect.CodeFailedPrecondition},
	"internal_error":      {500, connect.CodeInternal},
	"cursor_expired":      {410, connect.CodeOutOfRange},
	"limit_reached":       {409, connect.CodeResourceExhausted},
}

// userFromREST is a REST user as a message, checking its timestamps.
func userFromREST(u restjson.User) (*usersv1.User, error) {
	var ts [2]time.Time
	for i, s := range []string{u.CreatedAt, u.UpdatedAt} {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, fmt.Errorf("timestamp %q is not RFC 3339: %w", s, err)
		}
		if t.Location() != time.UTC {
			return nil, fmt.Errorf("timestamp %q is not UTC", s)
		}
		ts[i] = t
	}
	return &usersv1.User{Id: u.ID, Email: u.Email, FullName: u.FullName, CreatedAt: timestamppb.New(ts[0]),
		UpdatedAt: timestamppb.New(ts[1]), Etag: u.ETag}, nil
}

func (c restClient) do(ctx context.Context, method, path string, body []byte, wantStatus int, out any, hdr ...string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	// A request the document refuses is still sent: the server must refuse
	// it too (the cases of bad input send such requests on purpose).
	refused := c.openAPI.request(req, body)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if err := c.openAPI.response(req, body, resp, respBody); err != nil {
		return nil, err
	}
	if refused != nil && resp.StatusCode < 400 {
		return nil, fmt.Errorf("the server answered %d to a request openapi.json refuses: %w", resp.StatusCode, refused)
	}
	if resp.StatusCode == http.StatusNoContent && wantStatus == http.StatusNoContent {
		return resp, nil
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		return nil, fmt.Errorf("content-type %q, want application/json", ct)
	}
	dec := json.NewDecoder(bytes.NewReader(respBody))
	if resp.StatusCode != wantStatus {
		var e struct{ Error, Message, Field string }
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("status %d with undecodable body: %w", resp.StatusCode, err)
		}
		want, ok := restCodes[e.Error]
		if !ok || want.status != resp.StatusCode {
			return nil, fmt.Errorf("status %d with error %q does not match the error table", resp.StatusCode, e.Error)
		}
		return nil, &callError{code: want.code, field: e.Field, msg: e.Message}
	}
	dec.DisallowUnknownFields()
	return resp, dec.Decode(out)
}

func (c restClient) create(ctx context.Context, req *usersv1.CreateUserRequest) (*usersv1.User, error) {
	body, _ := json.Marshal(map[string]string{"email": req.Email, "full_name": req.FullName})
	var u restjson.User
	resp, err := c.do(ctx, http.MethodPost, "/users", body, http.StatusCreated, &u)
	if err != nil {
		return nil, err
	}
	if loc := resp.Header.Get("Location"); loc != "/users/"+u.ID {
		return nil, fmt.Errorf("Location %q, want /users/%s", loc, u.ID)
	}
	return userFromREST(u)
}

func (c restClient) get(ctx context.Context, id string) (*usersv1.User, error) {
	var u restjson.User
	resp, err := c.do(ctx, http.MethodGet, "/users/"+url.PathEscape(id), nil, http.StatusOK, &u)
	if err != nil {
		return nil, err
	}
	if got := resp.Header.Get("ETag"); got != `"`+u.ETag+`"` {
		return nil, fmt.Errorf("ETag header %s, want the body's etag %q quoted", got, u.ETag)
	}
	return userFromREST(u)
}

func (c restClient) byEmail(ctx context.Context, email string) ([]*usersv1.User, error) {
	var page struct {
		Users         []restjson.User `json:"users"`
		NextPageToken string          `json:"next_page_token"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/users?"+url.Values{"email": {email}}.Encode(), nil, http.StatusOK, &page); err != nil {
		return nil, err
	}
	var out []*usersv1.User
	for _, u := range page.Users {
		pu, err := userFromREST(u)
		if err != nil {
			return nil, err
		}
		out = append(out, pu)
	}
	return out, nil
}

// update sends PATCH /users/{id} with the fields the mask names (or, with
// an empty mask, the non-empty ones), and user.etag as If-Match. A mask path
// that is not a field goes as a JSON key of that name, which the shim
// refuses as an unknown field.
func (c restClient) update(ctx context.Context, req *usersv1.UpdateUserRequest) (*usersv1.User, error) {
	u := req.GetUser()
	fields := map[string]string{}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		if u.GetEmail() != "" {
			paths = append(paths, "email")
		}
		if u.GetFullName() != "" {
			paths = append(paths, "full_name")
		}
	}
	for _, p := range paths {
		switch p {
		case "email":
			fields[p] = u.GetEmail()
		case "full_name":
			fields[p] = u.GetFullName()
		default:
			fields[p] = ""
		}
	}
	body, _ := json.Marshal(fields)
	var hdr []string
	if u.GetEtag() != "" {
		hdr = []string{"If-Match", `"` + u.GetEtag() + `"`}
	}
	var out restjson.User
	resp, err := c.do(ctx, http.MethodPatch, "/users/"+url.PathEscape(u.GetId()), body, http.StatusOK, &out, hdr...)
	if err != nil {
		return nil, err
	}
	if got := resp.Header.Get("ETag"); got != `"`+out.ETag+`"` {
		return nil, fmt.Errorf("ETag header %s, want the body's etag %q quoted", got, out.ETag)
	}
	return userFromREST(out)
}

func (c restClient) remove(ctx context.Context, id, etag string) error {
	var hdr []string
	if etag != "" {
		hdr = []string{"If-Match", `"` + etag + `"`}
	}
	_, err := c.do(ctx, http.MethodDelete, "/users/"+url.PathEscape(id), nil, http.StatusNoContent, nil, hdr...)
	return err
}

func (c restClient) list(ctx context.Context, size int32, token string) (*usersv1.ListUsersResponse, error) {
	var page struct {
		Users         []restjson.User `json:"users"`
		NextPageToken string          `json:"next_page_token"`
	}
	q := url.Values{"page_size": {fmt.Sprint(size)}, "page_token": {token}}
	if _, err := c.do(ctx, http.MethodGet, "/users?"+q.Encode(), nil, http.StatusOK, &page); err != nil {
		return nil, err
	}
	out := &usersv1.ListUsersResponse{NextPageToken: page.NextPageToken}
	for _, u := range page.Users {
		pu, err := userFromREST(u)
		if err != nil {
			return nil, err
		}
		out.Users = append(out.Users, pu)
	}
	return out, nil
}

// wantField checks err is code, naming field.
func wantField(t *testing.T, what string, err error, code connect.Code, field string) {
	t.Helper()
	var ce *callError
	if !errors.As(err, &ce) || ce.code != code || ce.field != field {
		t.Errorf("%s: err = %v, want %v naming field %q", what, err, code, field)
	}
}
