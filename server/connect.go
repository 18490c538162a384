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
	// (and proxies) know the watch is open before the first event.
	send := stream.Send
	if err := h.svc.WatchUserEvents(ctx, req.Msg, send); err != nil && ctx.Err() == nil {
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
// the error table.
func unary[Req, Res any](ctx context.Context, log *slog.Logger, req *connect.Request[Req], op func(context.Context, *Req) (*Res, error)) (*connect.Response[Res], error) {
	res, err := op(ctx, req.Msg)
	if err != nil {
		return nil, connectError(ctx, log, err)
	}
	return connect.NewResponse(res), nil
}
