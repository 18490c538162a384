package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/protobuf/types/known/timestamppb"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/store"
)

// service is the users API behind every entry point: the Connect handler
// (Connect, gRPC, gRPC-Web) and the REST shim both call it, so validation
// and store access exist once.
type service struct {
	users *store.Users
	log   *slog.Logger
}

func (s *service) createUser(ctx context.Context, req *usersv1.CreateUserRequest) (*usersv1.User, error) {
	if err := validate(req); err != nil {
		return nil, err
	}
	subject, err := selfSubject(ctx)
	if err != nil {
		return nil, err
	}
	u, err := s.users.Create(ctx, store.NewUser{Email: req.Email, FullName: req.FullName, Subject: subject})
	if err != nil {
		return nil, err
	}
	return toProto(u), nil
}

func (s *service) getUser(ctx context.Context, req *usersv1.GetUserRequest) (*usersv1.User, error) {
	if err := validate(req); err != nil {
		return nil, err
	}
	id, _ := parseID(req.Id) // validated above
	u, err := s.users.Get(ctx, id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	// The policy before not_found: a caller limited to its own user must
	// not learn whether someone else's id exists.
	if aerr := mayActOn(ctx, u.Subject, err == nil); aerr != nil {
		return nil, aerr
	}
	if err != nil {
		return nil, err
	}
	return toProto(u), nil
}

func (s *service) listUsers(ctx context.Context, req *usersv1.ListUsersRequest) (*usersv1.ListUsersResponse, error) {
	if err := validate(req); err != nil {
		return nil, err
	}
	before, _ := decodePageToken(req.PageToken) // validated above
	page, more, err := s.users.List(ctx, before, pageSize(req.PageSize))
	if err != nil {
		return nil, err
	}
	resp := &usersv1.ListUsersResponse{Users: make([]*usersv1.User, len(page))}
	for i, u := range page {
		resp.Users[i] = toProto(u)
	}
	if more {
		resp.NextPageToken = encodePageToken(page[len(page)-1].ID)
	}
	return resp, nil
}

func toProto(u store.User) *usersv1.User {
	return &usersv1.User{
		Id:        u.ID.String(),
		Email:     u.Email,
		FullName:  u.FullName,
		CreatedAt: timestamppb.New(u.CreatedAt),
	}
}
