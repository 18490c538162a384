package server_test

import (
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/gen/users/v1/usersv1connect"
	"github.com/acme/usersd/internal/devissuer"
	"github.com/acme/usersd/restjson"
)

// TestConsistencyTokenEveryProtocol: every write answers with a
// Consistency-Token header; a read may send it back (REST header, Connect
// header, gRPC metadata, gRPC-Web header alike); a malformed one is
// invalid_argument (REST 400), never a silent stale read. (Routing by the
// token is store/'s, tested against a real replica there.)
func TestConsistencyTokenEveryProtocol(t *testing.T) {
	t.Parallel()
	ts := setup(t, setupOpts{memory: true})
	ctx := t.Context()
	h2 := h2cClient(t)
	h2.Transport = devissuer.Bearer{Token: ts.Admin, Base: h2.Transport}
	for name, opts := range map[string][]connect.ClientOption{
		"connect":  {connect.WithProtoJSON()},
		"grpc":     {connect.WithGRPC()},
		"grpc-web": {connect.WithGRPCWeb()},
	} {
		c := usersv1connect.NewUserServiceClient(h2, ts.URL, opts...)
		created, err := c.CreateUser(ctx, connect.NewRequest(&usersv1.CreateUserRequest{Email: name + "@example.com", FullName: name}))
		if err != nil {
			t.Fatalf("%s: create: %v", name, err)
		}
		tok := created.Header().Get("Consistency-Token")
		if tok == "" {
			t.Fatalf("%s: the create answered without a Consistency-Token", name)
		}
		get := connect.NewRequest(&usersv1.GetUserRequest{Id: created.Msg.User.Id})
		get.Header().Set("Consistency-Token", tok)
		if _, err := c.GetUser(ctx, get); err != nil {
			t.Errorf("%s: a read with the token: %v", name, err)
		}
		upd, err := c.UpdateUser(ctx, connect.NewRequest(&usersv1.UpdateUserRequest{User: &usersv1.User{Id: created.Msg.User.Id, FullName: "Renamed"}}))
		if err != nil || upd.Header().Get("Consistency-Token") == "" || upd.Header().Get("Consistency-Token") == tok {
			t.Errorf("%s: the update's token %q (create's %q), %v; want a newer one", name, upd.Header().Get("Consistency-Token"), tok, err)
		}
		bad := connect.NewRequest(&usersv1.GetUserRequest{Id: created.Msg.User.Id})
		bad.Header().Set("Consistency-Token", "not-a-token")
		_, err = c.GetUser(ctx, bad)
		wantField(t, name+": malformed token", fromConnect(err), connect.CodeInvalidArgument, "Consistency-Token")
		del, err := c.DeleteUser(ctx, connect.NewRequest(&usersv1.DeleteUserRequest{Id: created.Msg.User.Id}))
		if err != nil || del.Header().Get("Consistency-Token") == "" {
			t.Errorf("%s: the delete's token %v, %v", name, del, err)
		}
	}

	// grpc-go: metadata.
	conn, err := grpc.NewClient(strings.TrimPrefix(ts.URL, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(bearerCreds(ts.Admin)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var header metadata.MD
	created := new(usersv1.CreateUserResponse)
	if err := conn.Invoke(ctx, usersv1connect.UserServiceCreateUserProcedure, &usersv1.CreateUserRequest{Email: "grpc-go@example.com", FullName: "G"}, created, grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	tok := header.Get("consistency-token")
	if len(tok) != 1 {
		t.Fatalf("grpc-go: consistency-token metadata %v", tok)
	}
	md := metadata.AppendToOutgoingContext(ctx, "consistency-token", tok[0])
	if err := conn.Invoke(md, usersv1connect.UserServiceGetUserProcedure, &usersv1.GetUserRequest{Id: created.User.Id}, new(usersv1.GetUserResponse)); err != nil {
		t.Errorf("grpc-go: a read with the token: %v", err)
	}
	err = conn.Invoke(metadata.AppendToOutgoingContext(ctx, "consistency-token", "x"), usersv1connect.UserServiceGetUserProcedure, &usersv1.GetUserRequest{Id: created.User.Id}, new(usersv1.GetUserResponse))
	wantField(t, "grpc-go: malformed token", grpcError(err), connect.CodeInvalidArgument, "Consistency-Token")

	// REST: every write's answer carries it (openapi.json requires the
	// header, and the REST client checks every answer against it); a
	// malformed one is 400.
	rest := clients(t, ts)["rest"].(restClient)
	var u restjson.User
	resp, err := rest.do(ctx, http.MethodPost, "/users", []byte(`{"email":"rest@example.com","full_name":"R"}`), http.StatusCreated, &u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rest.do(ctx, http.MethodGet, "/users/"+u.ID, nil, http.StatusOK, new(restjson.User), "Consistency-Token", resp.Header.Get("Consistency-Token")); err != nil {
		t.Errorf("REST: a read with the token: %v", err)
	}
	_, err = rest.do(ctx, http.MethodGet, "/users/"+u.ID, nil, http.StatusOK, new(restjson.User), "Consistency-Token", "garbage")
	wantField(t, "REST: malformed token", err, connect.CodeInvalidArgument, "Consistency-Token")
}
