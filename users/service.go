// Package users is usersd's domain: the operations of the users API, with
// their input rules, versions and etags, self sign-up and the authorization
// decision for a caller, over a small Storage interface. It knows nothing of
// HTTP, Connect or PostgreSQL: server/ carries requests to it over every
// protocol, and store/ implements Storage.
package users

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	usersv1 "github.com/acme/usersd/gen/users/v1"
)

// Service is the users API. Its operations take and return the messages of
// users.v1.UserService, and obey the Grant in their context (WithGrant).
type Service struct {
	store Storage
	opts  Options
	hub   *hub
}

// Options adjust a Service.
type Options struct {
	// NoteUser, when set, is told the id of the user a call reads or
	// changes, once the id is valid: the transport puts it in its access
	// log and trace (ids, never emails, identify users there).
	NoteUser func(ctx context.Context, id uuid.UUID)
	// FeedPoll is how often the feed is read for this process's watchers
	// while there are any (default 200ms); a change made through this
	// process is read at once.
	FeedPoll time.Duration
	// AllowPrivateWebhooks lets webhooks name loopback, private and
	// link-local addresses (WEBHOOK_ALLOW_PRIVATE).
	AllowPrivateWebhooks bool
}

// DefaultFeedPoll is Options.FeedPoll's default.
const DefaultFeedPoll = 200 * time.Millisecond

// New returns the service over s. Close it to end the watches.
func New(s Storage, opts Options) *Service {
	if opts.FeedPoll <= 0 {
		opts.FeedPoll = DefaultFeedPoll
	}
	return &Service{store: s, opts: opts, hub: newHub(s, opts.FeedPoll)}
}

func (s *Service) note(ctx context.Context, id uuid.UUID) {
	if s.opts.NoteUser != nil {
		s.opts.NoteUser(ctx, id)
	}
}

// CreateUser stores a new user. Under a self grant the user is bound to
// the caller's subject, and a second one is ErrSubjectTaken.
func (s *Service) CreateUser(ctx context.Context, req *usersv1.CreateUserRequest) (*usersv1.CreateUserResponse, error) {
	if err := validateCreate(req); err != nil {
		return nil, err
	}
	subject, err := grantOf(ctx).boundSubject()
	if err != nil {
		return nil, err
	}
	u, err := s.store.Create(ctx, NewUser{Email: req.Email, FullName: req.FullName, Subject: subject})
	if err != nil {
		return nil, err
	}
	s.hub.Poke()
	return &usersv1.CreateUserResponse{User: ToProto(u)}, nil
}

// GetUser returns one user.
func (s *Service) GetUser(ctx context.Context, req *usersv1.GetUserRequest) (*usersv1.GetUserResponse, error) {
	u, err := s.LookupUser(ctx, req.Id)
	if err != nil {
		return nil, err
	}
	return &usersv1.GetUserResponse{User: ToProto(u)}, nil
}

// LookupUser is GetUser's rules without the message: the REST shim
// writes its JSON straight from the stored user.
func (s *Service) LookupUser(ctx context.Context, rawID string) (User, error) {
	id, err := validateGet(&usersv1.GetUserRequest{Id: rawID})
	if err != nil {
		return User{}, err
	}
	s.note(ctx, id)
	u, err := s.store.Get(ctx, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return User{}, err
	}
	// The policy before not_found: a caller limited to its own user must
	// not learn whether someone else's id exists.
	if aerr := grantOf(ctx).mayActOn(u.Subject, err == nil); aerr != nil {
		return User{}, aerr
	}
	if err != nil {
		return User{}, err
	}
	return u, nil
}

// ListUsers pages through users, newest first, or finds one by email.
func (s *Service) ListUsers(ctx context.Context, req *usersv1.ListUsersRequest) (*usersv1.ListUsersResponse, error) {
	before, err := validateList(req)
	if err != nil {
		return nil, err
	}
	if err := grantOf(ctx).requireAll(); err != nil {
		return nil, err
	}
	if req.Email != "" {
		return s.findByEmail(ctx, req.Email, before)
	}
	page, more, err := s.store.List(ctx, before, pageSize(req.PageSize))
	if err != nil {
		return nil, err
	}
	resp := &usersv1.ListUsersResponse{Users: make([]*usersv1.User, len(page))}
	for i, u := range page {
		resp.Users[i] = ToProto(u)
	}
	if more {
		resp.NextPageToken = encodePageToken(page[len(page)-1].ID)
	}
	return resp, nil
}

// findByEmail is ListUsers filtered by email: zero or one user, and no
// next page.
func (s *Service) findByEmail(ctx context.Context, email string, before uuid.UUID) (*usersv1.ListUsersResponse, error) {
	u, err := s.store.FindByEmail(ctx, email)
	switch {
	case errors.Is(err, ErrNotFound):
		return &usersv1.ListUsersResponse{}, nil
	case err != nil:
		return nil, err
	case before != uuid.Nil && bytes.Compare(u.ID[:], before[:]) >= 0:
		return &usersv1.ListUsersResponse{}, nil // not on the pages after the token
	}
	return &usersv1.ListUsersResponse{Users: []*usersv1.User{ToProto(u)}}, nil
}

// UpdateUser changes the fields its mask names, if the etag (when given)
// is still current.
func (s *Service) UpdateUser(ctx context.Context, req *usersv1.UpdateUserRequest) (*usersv1.UpdateUserResponse, error) {
	id, err := validateUpdate(req)
	if err != nil {
		return nil, err
	}
	s.note(ctx, id)
	owner, err := grantOf(ctx).boundSubject()
	if err != nil {
		return nil, err
	}
	var p Patch
	for _, path := range req.UpdateMask.GetPaths() { // validated: email, full_name; filled in when empty
		switch path {
		case PathEmail:
			p.Email = &req.User.Email
		case PathFullName:
			p.FullName = &req.User.FullName
		}
	}
	u, err := s.store.Update(ctx, id, p, Guard{Version: versionOf(id, req.User.Etag), Subject: owner})
	if err != nil {
		return nil, ownerError(owner, err)
	}
	s.hub.Poke()
	return &usersv1.UpdateUserResponse{User: ToProto(u)}, nil
}

// DeleteUser erases a user, if the etag (when given) is still current.
func (s *Service) DeleteUser(ctx context.Context, req *usersv1.DeleteUserRequest) (*usersv1.DeleteUserResponse, error) {
	id, err := validateDelete(req)
	if err != nil {
		return nil, err
	}
	s.note(ctx, id)
	owner, err := grantOf(ctx).boundSubject()
	if err != nil {
		return nil, err
	}
	if err := s.store.Delete(ctx, id, Guard{Version: versionOf(id, req.Etag), Subject: owner}); err != nil {
		return nil, ownerError(owner, err)
	}
	s.hub.Poke()
	return &usersv1.DeleteUserResponse{}, nil
}

// ownerError is the policy's answer when a change was limited to the
// caller's own user: someone else's user and a missing one are both
// permission_denied, so ids cannot be probed.
func ownerError(owner string, err error) error {
	if owner != "" && (errors.Is(err, ErrNotOwner) || errors.Is(err, ErrNotFound)) {
		return errOwnOnly
	}
	return err
}

// ToProto is u as the API shows it.
func ToProto(u User) *usersv1.User {
	return &usersv1.User{
		Id:        u.ID.String(),
		Email:     u.Email,
		FullName:  u.FullName,
		CreatedAt: timestamppb.New(u.CreatedAt),
		UpdatedAt: timestamppb.New(u.UpdatedAt),
		Etag:      etagOf(u.ID, u.Version),
	}
}
