package server

import (
	"context"
	"log/slog"

	"connectrpc.com/connect"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/gen/users/v1/usersv1connect"
	"github.com/acme/usersd/users"
)

// connectHandler serves UserService over Connect, gRPC and gRPC-Web: each
// method hands its message to the domain operation of the same name.
type connectHandler struct {
	svc *users.Service
	log *slog.Logger
}

var _ usersv1connect.UserServiceHandler = (*connectHandler)(nil)

func (h *connectHandler) CreateUser(ctx context.Context, req *connect.Request[usersv1.CreateUserRequest]) (*connect.Response[usersv1.CreateUserResponse], error) {
	return unary(ctx, h.log, req, h.svc.CreateUser)
}

func (h *connectHandler) GetUser(ctx context.Context, req *connect.Request[usersv1.GetUserRequest]) (*connect.Response[usersv1.GetUserResponse], error) {
	return unary(ctx, h.log, req, h.svc.GetUser)
}

func (h *connectHandler) ListUsers(ctx context.Context, req *connect.Request[usersv1.ListUsersRequest]) (*connect.Response[usersv1.ListUsersResponse], error) {
	return unary(ctx, h.log, req, h.svc.ListUsers)
}

func (h *connectHandler) UpdateUser(ctx context.Context, req *connect.Request[usersv1.UpdateUserRequest]) (*connect.Response[usersv1.UpdateUserResponse], error) {
	return unary(ctx, h.log, req, h.svc.UpdateUser)
}

func (h *connectHandler) DeleteUser(ctx context.Context, req *connect.Request[usersv1.DeleteUserRequest]) (*connect.Response[usersv1.DeleteUserResponse], error) {
	return unary(ctx, h.log, req, h.svc.DeleteUser)
}

func (h *connectHandler) ListUserEvents(ctx context.Context, req *connect.Request[usersv1.ListUserEventsRequest]) (*connect.Response[usersv1.ListUserEventsResponse], error) {
	return unary(ctx, h.log, req, h.svc.ListUserEvents)
}

func (h *connectHandler) WatchUserEvents(ctx context.Context, req *connect.Request[usersv1.WatchUserEventsRequest], stream *connect.ServerStream[usersv1.UserEvent]) error {
	// stream.Send(nil) at caught-up sends the response headers: clients
	// (and proxies) know the watch is open before the first event. Proxies
	// such as nginx must not buffer the stream.
	stream.ResponseHeader().Set("X-Accel-Buffering", "no")
	send := stream.Send
	ctx, err := readAfter(ctx, req.Header().Get(consistencyHeader))
	if err == nil {
		err = h.svc.WatchUserEvents(ctx, req.Msg, send)
	}
	if err != nil && ctx.Err() == nil {
		return connectError(ctx, h.log, err)
	}
	return nil // the client left
}

func (h *connectHandler) CreateWebhook(ctx context.Context, req *connect.Request[usersv1.CreateWebhookRequest]) (*connect.Response[usersv1.CreateWebhookResponse], error) {
	return unary(ctx, h.log, req, h.svc.CreateWebhook)
}

func (h *connectHandler) ListWebhooks(ctx context.Context, req *connect.Request[usersv1.ListWebhooksRequest]) (*connect.Response[usersv1.ListWebhooksResponse], error) {
	return unary(ctx, h.log, req, h.svc.ListWebhooks)
}

func (h *connectHandler) DeleteWebhook(ctx context.Context, req *connect.Request[usersv1.DeleteWebhookRequest]) (*connect.Response[usersv1.DeleteWebhookResponse], error) {
	return unary(ctx, h.log, req, h.svc.DeleteWebhook)
}

// unary runs one domain operation for a unary RPC and maps its error by
// the error table. A Consistency-Token request header makes its reads see
// at least that write; a write answers with the token of its commit.
func unary[Req, Res any](ctx context.Context, log *slog.Logger, req *connect.Request[Req], op func(context.Context, *Req) (*Res, error)) (*connect.Response[Res], error) {
	ctx, err := readAfter(ctx, req.Header().Get(consistencyHeader))
	if err != nil {
		return nil, connectError(ctx, log, err)
	}
	var writes *users.Writes
	if req.Spec().IdempotencyLevel != connect.IdempotencyNoSideEffects {
		ctx, writes = users.RecordWrites(ctx)
	}
	res, err := op(ctx, req.Msg)
	if err != nil {
		return nil, connectError(ctx, log, err)
	}
	resp := connect.NewResponse(res)
	if writes != nil {
		if tok := writes.Token(); tok.Pos() != 0 {
			resp.Header().Set(consistencyHeader, tok.String())
		}
	}
	return resp, nil
}

// consistencyHeader carries a consistency token: in the answer to a
// write, and in a read that must see that write.
const consistencyHeader = "Consistency-Token"

// readAfter returns ctx whose reads must see the write the token names,
// when one is given; a malformed one is invalid_argument.
func readAfter(ctx context.Context, token string) (context.Context, error) {
	if token == "" {
		return ctx, nil
	}
	tok, err := users.ParseToken(consistencyHeader, token)
	if err != nil {
		return ctx, err
	}
	return users.ReadAfter(ctx, tok), nil
}
