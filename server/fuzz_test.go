package server

// Fuzz test of the REST body decoder. The seed corpus under testdata/fuzz/
// runs as an ordinary test with `go test ./server`; `make fuzz`
// (scripts/fuzz.sh) fuzzes it for FUZZTIME. Validation itself is fuzzed
// in users/.
//
// The property: no input panics or hangs, and every rejection is a
// *users.FieldError, which the error table maps to invalid_argument / 400,
// never to internal / 500.

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/users"
	"github.com/acme/usersd/users/userstest"
)

// fuzzCheckRejection fails unless err is nil or a *users.FieldError on
// one of the allowed fields that maps to invalid_argument / 400 on every
// protocol.
func fuzzCheckRejection(t *testing.T, what string, err error, fields ...string) {
	t.Helper()
	if err == nil {
		return
	}
	fe, ok := errors.AsType[*users.FieldError](err)
	if !ok || fe.Message == "" || !slices.Contains(fields, fe.Field) {
		t.Fatalf("%s: error %T (%v), want a *users.FieldError on one of %v", what, err, err, fields)
	}
	w, msg := toWire(context.Background(), slog.New(slog.DiscardHandler), err)
	if w.code != connect.CodeInvalidArgument || w.status != http.StatusBadRequest || w.rest != "validation" {
		t.Fatalf("%s: %v maps to %v / %d / %q, want invalid_argument / 400 / validation", what, err, w.code, w.status, w.rest)
	}
	if msg == "" {
		t.Fatalf("%s: %v maps to an empty client message", what, err)
	}
	ce := connectError(context.Background(), slog.New(slog.DiscardHandler), err)
	if ce.Code() != connect.CodeInvalidArgument || len(ce.Details()) != 1 {
		t.Fatalf("%s: Connect error %v with %d details, want invalid_argument with one BadRequest detail", what, ce, len(ce.Details()))
	}
}

// FuzzDecodeCreateJSON: the REST body decoder on any bytes, and the
// domain's answer to what it decodes.
func FuzzDecodeCreateJSON(f *testing.F) {
	svc := users.New(userstest.NewMemory(), users.Options{})
	ctx := users.WithGrant(context.Background(), users.GrantAll())
	f.Fuzz(func(t *testing.T, b []byte) {
		var req usersv1.CreateUserRequest
		err := decodeCreateJSON(b, &req)
		fuzzCheckRejection(t, "decodeCreateJSON", err, "body", "email", "full_name")
		if err != nil {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted a body that is not valid JSON: %q", b)
		}
		if trimmed := strings.TrimLeft(string(b), " \t\r\n"); !strings.HasPrefix(trimmed, "{") {
			t.Fatalf("accepted a body that is not a JSON object: %q", b)
		}
		_, err = svc.CreateUser(ctx, &req)
		if errors.Is(err, users.ErrEmailTaken) {
			return // the corpus may hold one address twice
		}
		fuzzCheckRejection(t, "CreateUser after decodeCreateJSON", err, "email", "full_name")
	})
}
