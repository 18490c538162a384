package server

import (
	"encoding/base64"
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	usersv1 "github.com/acme/usersd/gen/users/v1"
)

// Page sizes of ListUsers.
const (
	defaultPageSize = 50
	maxPageSize     = 100
)

// FieldError is invalid input in one request field. It becomes
// invalid_argument (REST 400) with a google.rpc.BadRequest detail.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

func fieldError(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// validate checks a request against the input rules of every entry point
// (Connect, gRPC, gRPC-Web and REST all call it through the service) and
// normalises it in place: surrounding space is trimmed. It returns a
// *FieldError for the first field that breaks a rule.
func validate(req any) error {
	switch r := req.(type) {
	case *usersv1.CreateUserRequest:
		r.Email = strings.TrimSpace(r.Email)
		r.FullName = strings.TrimSpace(r.FullName)
		if err := checkEmail(r.Email); err != nil {
			return err
		}
		return checkFullName(r.FullName)
	case *usersv1.GetUserRequest:
		_, err := parseID(r.Id)
		return err
	case *usersv1.ListUsersRequest:
		if r.PageSize < 0 {
			return fieldError("page_size", "must not be negative")
		}
		if _, err := decodePageToken(r.PageToken); err != nil {
			return err
		}
		if r.Email = strings.TrimSpace(r.Email); r.Email != "" {
			return checkEmail(r.Email)
		}
		return nil
	case *usersv1.UpdateUserRequest:
		return validateUpdate(r)
	case *usersv1.DeleteUserRequest:
		_, err := parseID(r.Id)
		return err
	}
	return fmt.Errorf("validate: unexpected request type %T", req)
}

// Updatable fields of a user, as update_mask paths.
const (
	pathEmail    = "email"
	pathFullName = "full_name"
)

// validateUpdate checks an UpdateUserRequest and fills in an empty mask
// with the updatable fields that are set, so the mask always lists exactly
// what changes.
func validateUpdate(r *usersv1.UpdateUserRequest) error {
	u := r.User
	if u == nil {
		return fieldError("user", "is required: it names the user by id and holds the new values")
	}
	if _, err := parseID(u.Id); err != nil {
		return fieldError("user.id", "%s", err.(*FieldError).Message)
	}
	u.Email, u.FullName = strings.TrimSpace(u.Email), strings.TrimSpace(u.FullName)
	if r.UpdateMask == nil {
		r.UpdateMask = &fieldmaskpb.FieldMask{}
	}
	if len(r.UpdateMask.Paths) == 0 {
		if u.Email != "" {
			r.UpdateMask.Paths = append(r.UpdateMask.Paths, pathEmail)
		}
		if u.FullName != "" {
			r.UpdateMask.Paths = append(r.UpdateMask.Paths, pathFullName)
		}
		if len(r.UpdateMask.Paths) == 0 {
			return fieldError("update_mask", "names nothing to update: set email or full_name")
		}
	}
	for _, path := range r.UpdateMask.Paths {
		var err error
		switch path {
		case pathEmail:
			err = checkEmail(u.Email)
		case pathFullName:
			err = checkFullName(u.FullName)
		default:
			if len(path) > 64 {
				path = path[:64] + "..."
			}
			return fieldError("update_mask", "path %q cannot be updated; updatable: email, full_name", path)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func checkEmail(email string) error {
	switch {
	case email == "":
		return fieldError("email", "is required")
	case len(email) < 3 || len(email) > 254:
		return fieldError("email", "must be 3 to 254 bytes long")
	}
	// One bare address: no display name, comments or angle brackets, so the
	// parsed address must be the whole input.
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || addr.Address != email {
		return fieldError("email", "must be a single address like name@example.com")
	}
	return nil
}

func checkFullName(name string) error {
	if name == "" {
		return fieldError("full_name", "is required")
	}
	if !utf8.ValidString(name) {
		return fieldError("full_name", "must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(name); n > 200 {
		return fieldError("full_name", "must be at most 200 characters, not %d", n)
	}
	if strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return fieldError("full_name", "must not contain control characters")
	}
	return nil
}

// parseID accepts only the canonical 36-character UUID form.
func parseID(s string) (uuid.UUID, error) {
	if len(s) != 36 {
		return uuid.Nil, fieldError("id", "must be a UUID like 0190c3b6-6f2e-7c4a-9d3e-2b5f8a1c0d4e")
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fieldError("id", "must be a UUID like 0190c3b6-6f2e-7c4a-9d3e-2b5f8a1c0d4e")
	}
	return id, nil
}

// pageSize applies the default and the cap to a validated page size.
func pageSize(n int32) int {
	switch {
	case n == 0:
		return defaultPageSize
	case n > maxPageSize:
		return maxPageSize
	}
	return int(n)
}

// Page tokens are the id of the last user of the previous page, base64url
// encoded. Clients must treat them as opaque.
var tokenEncoding = base64.RawURLEncoding

func encodePageToken(last uuid.UUID) string { return tokenEncoding.EncodeToString(last[:]) }

// decodePageToken returns uuid.Nil for the empty token (the first page).
func decodePageToken(tok string) (uuid.UUID, error) {
	var id uuid.UUID
	if tok == "" {
		return id, nil
	}
	if tokenEncoding.DecodedLen(len(tok)) != len(id) {
		return id, fieldError("page_token", "is not a token this server issued")
	}
	// The decoder skips CR and LF; only the canonical encoding is a token.
	if _, err := tokenEncoding.Strict().Decode(id[:], []byte(tok)); err != nil || id == uuid.Nil || encodePageToken(id) != tok {
		return uuid.Nil, fieldError("page_token", "is not a token this server issued")
	}
	return id, nil
}
