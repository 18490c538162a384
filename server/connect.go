package server

import (
	"context"

	"connectrpc.com/connect"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/gen/users/v1/usersv1connect"
)

// connectHandler serves UserService over Connect, gRPC and gRPC-Web.
type connectHandler struct{ svc *service }

var _ usersv1connect.UserServiceHandler = (*connectHandler)(nil)

func (h *connectHandler) CreateUser(ctx context.Context, req *connect.Request[usersv1.CreateUserRequest]) (*connect.Response[usersv1.CreateUserResponse], error) {
	u, err := h.svc.createUser(ctx, req.Msg)
	if err != nil {
		return nil, connectError(ctx, h.svc.log, err)
	}
	return connect.NewResponse(&usersv1.CreateUserResponse{User: u}), nil
}

func (h *connectHandler) GetUser(ctx context.Context, req *connect.Request[usersv1.GetUserRequest]) (*connect.Response[usersv1.GetUserResponse], error) {
	u, err := h.svc.getUser(ctx, req.Msg)
	if err != nil {
		return nil, connectError(ctx, h.svc.log, err)
	}
	return connect.NewResponse(&usersv1.GetUserResponse{User: u}), nil
}

func (h *connectHandler) ListUsers(ctx context.Context, req *connect.Request[usersv1.ListUsersRequest]) (*connect.Response[usersv1.ListUsersResponse], error) {
	resp, err := h.svc.listUsers(ctx, req.Msg)
	if err != nil {
		return nil, connectError(ctx, h.svc.log, err)
	}
	return connect.NewResponse(resp), nil
}

func (h *connectHandler) UpdateUser(ctx context.Context, req *connect.Request[usersv1.UpdateUserRequest]) (*connect.Response[usersv1.UpdateUserResponse], error) {
	u, err := h.svc.updateUser(ctx, req.Msg)
	if err != nil {
		return nil, connectError(ctx, h.svc.log, err)
	}
	return connect.NewResponse(&usersv1.UpdateUserResponse{User: u}), nil
}

func (h *connectHandler) DeleteUser(ctx context.Context, req *connect.Request[usersv1.DeleteUserRequest]) (*connect.Response[usersv1.DeleteUserResponse], error) {
	if err := h.svc.deleteUser(ctx, req.Msg); err != nil {
		return nil, connectError(ctx, h.svc.log, err)
	}
	return connect.NewResponse(&usersv1.DeleteUserResponse{}), nil
}
