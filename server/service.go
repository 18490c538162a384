package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"

	"github.com/google/uuid"
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
	subject, err := boundSubject(ctx)
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
	noteUser(ctx, id)
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
	if req.Email != "" {
		return s.findByEmail(ctx, req.Email, before)
	}
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

// findByEmail is ListUsers filtered by email: zero or one user, and no
// next page.
func (s *service) findByEmail(ctx context.Context, email string, before uuid.UUID) (*usersv1.ListUsersResponse, error) {
	u, err := s.users.FindByEmail(ctx, email)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &usersv1.ListUsersResponse{}, nil
	case err != nil:
		return nil, err
	case before != uuid.Nil && bytes.Compare(u.ID[:], before[:]) >= 0:
		return &usersv1.ListUsersResponse{}, nil // not on the pages after the token
	}
	return &usersv1.ListUsersResponse{Users: []*usersv1.User{toProto(u)}}, nil
}

func (s *service) updateUser(ctx context.Context, req *usersv1.UpdateUserRequest) (*usersv1.User, error) {
	if err := validate(req); err != nil {
		return nil, err
	}
	id, _ := parseID(req.User.Id) // validated above
	noteUser(ctx, id)
	owner, err := boundSubject(ctx)
	if err != nil {
		return nil, err
	}
	var p store.Patch
	for _, path := range req.UpdateMask.GetPaths() { // validated: email, full_name; filled in when empty
		switch path {
		case "email":
			p.Email = &req.User.Email
		case "full_name":
			p.FullName = &req.User.FullName
		}
	}
	u, err := s.users.Update(ctx, id, p, store.Guard{Version: versionOf(id, req.User.Etag), Subject: owner})
	if err != nil {
		return nil, ownerError(owner, err)
	}
	return toProto(u), nil
}

func (s *service) deleteUser(ctx context.Context, req *usersv1.DeleteUserRequest) error {
	if err := validate(req); err != nil {
		return err
	}
	id, _ := parseID(req.Id) // validated above
	noteUser(ctx, id)
	owner, err := boundSubject(ctx)
	if err != nil {
		return err
	}
	err = s.users.Delete(ctx, id, store.Guard{Version: versionOf(id, req.Etag), Subject: owner})
	return ownerError(owner, err)
}

// ownerError is the policy's answer when a change was limited to the
// caller's own user: someone else's user and a missing one are both
// permission_denied, so ids cannot be probed.
func ownerError(owner string, err error) error {
	if owner != "" && (errors.Is(err, store.ErrNotOwner) || errors.Is(err, store.ErrNotFound)) {
		return &deniedError{"without the needed scope a token may act only on its own user"}
	}
	return err
}

func toProto(u store.User) *usersv1.User {
	return &usersv1.User{
		Id:        u.ID.String(),
		Email:     u.Email,
		FullName:  u.FullName,
		CreatedAt: timestamppb.New(u.CreatedAt),
		UpdatedAt: timestamppb.New(u.UpdatedAt),
		Etag:      etagOf(u.ID, u.Version),
	}
}
