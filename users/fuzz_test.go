package users

// Fuzz tests of validation. The seed corpora under testdata/fuzz/ run as
// ordinary tests with `go test ./users`; `make fuzz` (scripts/fuzz.sh)
// fuzzes each target for FUZZTIME.
//
// The property everywhere: no input panics or hangs, and every rejection is
// a *FieldError naming the field at fault, which transports answer as
// invalid_argument / 400, never as internal / 500.

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	usersv1 "github.com/acme/usersd/gen/users/v1"
)

// fuzzCheckRejection fails unless err is nil or a *FieldError on one of
// the allowed fields, with a message.
func fuzzCheckRejection(t *testing.T, what string, err error, fields ...string) {
	t.Helper()
	if err == nil {
		return
	}
	fe, ok := err.(*FieldError)
	if !ok {
		t.Fatalf("%s: error %T (%v), want *FieldError", what, err, err)
	}
	if fe.Message == "" {
		t.Fatalf("%s: FieldError on %q has no message", what, fe.Field)
	}
	for _, f := range fields {
		if fe.Field == f {
			return
		}
	}
	t.Fatalf("%s: FieldError names field %q, want one of %v", what, fe.Field, fields)
}

// fuzzCheckValidCreate checks what validation promises about a CreateUser
// request it accepted, and that accepting is stable. The REST decoder's
// fuzzer holds what it decodes to the same promise.
func fuzzCheckValidCreate(t *testing.T, r *usersv1.CreateUserRequest) {
	t.Helper()
	e, n := r.Email, r.FullName
	switch {
	case e != strings.TrimSpace(e) || n != strings.TrimSpace(n):
		t.Fatalf("accepted request not trimmed: %q, %q", e, n)
	case len(e) < 3 || len(e) > 254:
		t.Fatalf("accepted email of %d bytes: %q", len(e), e)
	case !strings.Contains(e, "@"):
		t.Fatalf("accepted email without @: %q", e)
	case strings.ContainsAny(e, "\r\n\x00"):
		t.Fatalf("accepted email with CR, LF or NUL (mail header injection): %q", e)
	case !utf8.ValidString(e):
		t.Fatalf("accepted email that is not UTF-8: %q", e)
	case n == "" || !utf8.ValidString(n) || utf8.RuneCountInString(n) > 200:
		t.Fatalf("accepted full_name %q (%d runes)", n, utf8.RuneCountInString(n))
	case strings.IndexFunc(n, unicode.IsControl) >= 0:
		t.Fatalf("accepted full_name with a control character: %q", n)
	}
	again := &usersv1.CreateUserRequest{Email: e, FullName: n}
	if err := validateCreate(again); err != nil || again.Email != e || again.FullName != n {
		t.Fatalf("validating an accepted request again: %v, %q, %q", err, again.Email, again.FullName)
	}
}

// FuzzValidate: the validation of each request type.
func FuzzValidate(f *testing.F) {
	f.Fuzz(func(t *testing.T, email, fullName, id string, size int32, token string) {
		create := &usersv1.CreateUserRequest{Email: email, FullName: fullName}
		err := validateCreate(create)
		fuzzCheckRejection(t, "validate CreateUser", err, "email", "full_name")
		if err == nil {
			fuzzCheckValidCreate(t, create)
		}

		_, err = validateGet(&usersv1.GetUserRequest{Id: id})
		fuzzCheckRejection(t, "validate GetUser", err, "id")
		if err == nil {
			u, perr := uuid.Parse(id)
			if perr != nil || len(id) != 36 || !strings.EqualFold(u.String(), id) {
				t.Fatalf("accepted id %q that is not a canonical UUID", id)
			}
		}

		_, err = validateList(&usersv1.ListUsersRequest{PageSize: size, PageToken: token})
		fuzzCheckRejection(t, "validate ListUsers", err, "page_size", "page_token")
		if err == nil {
			if size < 0 {
				t.Fatalf("accepted page_size %d", size)
			}
			if n := pageSize(size); n < 1 || n > MaxPageSize {
				t.Fatalf("page_size %d becomes %d, want 1 to %d", size, n, MaxPageSize)
			}
			if _, derr := decodePageToken(token); derr != nil {
				t.Fatalf("accepted page_token %q that does not decode: %v", token, derr)
			}
		}
	})
}

// FuzzDecodePageToken: the page-token decoder accepts exactly the tokens
// the server issues.
func FuzzDecodePageToken(f *testing.F) {
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := decodePageToken(tok)
		fuzzCheckRejection(t, "decodePageToken", err, "page_token")
		switch {
		case tok == "":
			if err != nil || id != uuid.Nil {
				t.Fatalf("empty token: %v, %v; want the first page", id, err)
			}
		case err == nil:
			if id == uuid.Nil {
				t.Fatalf("token %q decodes to the nil UUID", tok)
			}
			if enc := encodePageToken(id); enc != tok {
				t.Fatalf("token %q decodes to %v, which the server encodes as %q: not a token it issued", tok, id, enc)
			}
		case !errors.As(err, new(*FieldError)):
			t.Fatalf("token %q: %v", tok, err)
		}
		// Whatever 16 bytes the input makes, their token round-trips.
		var u uuid.UUID
		copy(u[:], tok)
		if u != uuid.Nil {
			got, err := decodePageToken(encodePageToken(u))
			if err != nil || got != u {
				t.Fatalf("token of %v decodes to %v, %v", u, got, err)
			}
		}
	})
}
