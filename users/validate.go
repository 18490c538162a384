package users

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
	DefaultPageSize = 50
	MaxPageSize     = 100
)

// Updatable fields of a user, as update_mask paths.
const (
	PathEmail    = "email"
	PathFullName = "full_name"
)

// FieldError is invalid input in one request field. Transports answer it
// as invalid_argument (REST 400) naming the field. Its text never echoes
// more than a short part of the input.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// FieldErrorf returns a FieldError for field.
func FieldErrorf(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Every request message has its own validation function, so a new request
// type cannot reach the storage unchecked: each operation calls its own.
// They normalise in place (surrounding space is trimmed) and return a
// *FieldError for the first field that breaks a rule. Every transport gets
// the same rules, because every transport calls the Service.

func validateCreate(r *usersv1.CreateUserRequest) error {
	r.Email = strings.TrimSpace(r.Email)
	r.FullName = strings.TrimSpace(r.FullName)
	if err := checkEmail(r.Email); err != nil {
		return err
	}
	return checkFullName(r.FullName)
}

func validateGet(r *usersv1.GetUserRequest) (uuid.UUID, error) { return ParseID(r.Id) }

func validateDelete(r *usersv1.DeleteUserRequest) (uuid.UUID, error) { return ParseID(r.Id) }

func validateList(r *usersv1.ListUsersRequest) (before uuid.UUID, err error) {
	if r.PageSize < 0 {
		return uuid.Nil, FieldErrorf("page_size", "must not be negative")
	}
	if before, err = decodePageToken(r.PageToken); err != nil {
		return uuid.Nil, err
	}
	if r.Email = strings.TrimSpace(r.Email); r.Email != "" {
		return before, checkEmail(r.Email)
	}
	return before, nil
}

// validateUpdate checks an UpdateUserRequest and fills in an empty mask
// with the updatable fields that are set, so the mask always lists exactly
// what changes.
func validateUpdate(r *usersv1.UpdateUserRequest) (uuid.UUID, error) {
	u := r.User
	if u == nil {
		return uuid.Nil, FieldErrorf("user", "is required: it names the user by id and holds the new values")
	}
	id, err := ParseID(u.Id)
	if err != nil {
		return uuid.Nil, FieldErrorf("user.id", "%s", err.(*FieldError).Message)
	}
	u.Email, u.FullName = strings.TrimSpace(u.Email), strings.TrimSpace(u.FullName)
	if r.UpdateMask == nil {
		r.UpdateMask = &fieldmaskpb.FieldMask{}
	}
	if len(r.UpdateMask.Paths) == 0 {
		if u.Email != "" {
			r.UpdateMask.Paths = append(r.UpdateMask.Paths, PathEmail)
		}
		if u.FullName != "" {
			r.UpdateMask.Paths = append(r.UpdateMask.Paths, PathFullName)
		}
		if len(r.UpdateMask.Paths) == 0 {
			return uuid.Nil, FieldErrorf("update_mask", "names nothing to update: set email or full_name")
		}
	}
	for _, path := range r.UpdateMask.Paths {
		var err error
		switch path {
		case PathEmail:
			err = checkEmail(u.Email)
		case PathFullName:
			err = checkFullName(u.FullName)
		default:
			if len(path) > 64 {
				path = path[:64] + "..."
			}
			return uuid.Nil, FieldErrorf("update_mask", "path %q cannot be updated; updatable: email, full_name", path)
		}
		if err != nil {
			return uuid.Nil, err
		}
	}
	return id, nil
}

func checkEmail(email string) error {
	switch {
	case email == "":
		return FieldErrorf("email", "is required")
	case len(email) < 3 || len(email) > 254:
		return FieldErrorf("email", "must be 3 to 254 bytes long")
	}
	// One bare address: no display name, comments or angle brackets, so the
	// parsed address must be the whole input.
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || addr.Address != email {
		return FieldErrorf("email", "must be a single address like name@example.com")
	}
	return nil
}

func checkFullName(name string) error {
	if name == "" {
		return FieldErrorf("full_name", "is required")
	}
	if !utf8.ValidString(name) {
		return FieldErrorf("full_name", "must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(name); n > 200 {
		return FieldErrorf("full_name", "must be at most 200 characters, not %d", n)
	}
	if strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return FieldErrorf("full_name", "must not contain control characters")
	}
	return nil
}

// ParseID accepts only the canonical 36-character UUID form; anything else
// is a FieldError on "id".
func ParseID(s string) (uuid.UUID, error) {
	if len(s) != 36 {
		return uuid.Nil, FieldErrorf("id", "must be a UUID like 0190c3b6-6f2e-7c4a-9d3e-2b5f8a1c0d4e")
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, FieldErrorf("id", "must be a UUID like 0190c3b6-6f2e-7c4a-9d3e-2b5f8a1c0d4e")
	}
	return id, nil
}

// pageSize applies the default and the cap to a validated page size.
func pageSize(n int32) int {
	switch {
	case n == 0:
		return DefaultPageSize
	case n > MaxPageSize:
		return MaxPageSize
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
		return id, FieldErrorf("page_token", "is not a token this server issued")
	}
	// The decoder skips CR and LF; only the canonical encoding is a token.
	if _, err := tokenEncoding.Strict().Decode(id[:], []byte(tok)); err != nil || id == uuid.Nil || encodePageToken(id) != tok {
		return uuid.Nil, FieldErrorf("page_token", "is not a token this server issued")
	}
	return id, nil
}
