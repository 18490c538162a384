package users_test

import (
	"errors"
	"testing"

	"github.com/acme/usersd/users"
)

// TestParseToken: only tokens this service wrote are accepted.
func TestParseToken(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "x", "AAAAAAAAAAAAAAAA", users.TokenAt(42).String() + "A"} {
		if _, err := users.ParseToken("Consistency-Token", s); !errors.As(err, new(*users.FieldError)) {
			t.Errorf("ParseToken(%q) = %v, want a FieldError", s, err)
		}
	}
	if tok, err := users.ParseToken("Consistency-Token", users.TokenAt(42).String()); err != nil || tok.Pos() != 42 {
		t.Errorf("round trip: %v, %v", tok, err)
	}
}
