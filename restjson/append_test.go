package restjson_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/acme/usersd/restjson"
	"github.com/acme/usersd/users"
)

// TestAppendUserIsEncodingJSON: the hand-written encoder writes exactly
// what encoding/json writes for the same user, for names and addresses
// that need escaping too.
func TestAppendUserIsEncodingJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 4, 18, 1, 2, 345678000, time.FixedZone("x", 3600))
	for _, name := range []string{"Ada Lovelace", `Quote " and \ backslash`, "<script>&amp;</script>", "tab\there\nnewline\x01\x7f",
		"é ünïcode 漢字 😀", "bad \xff utf8", "line\u2028sep\u2029", ""} {
		u := users.User{ID: uuid.Must(uuid.NewV7()), Email: "a+b@example.com", FullName: name, CreatedAt: at, UpdatedAt: at.Add(time.Second), Version: 7}
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(restjson.FromUser(users.ToProto(u))); err != nil {
			t.Fatal(err)
		}
		if got := restjson.AppendUser(nil, u); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("name %q:\n got %s\nwant %s", name, got, want.Bytes())
		}
	}
}

func FuzzAppendUser(f *testing.F) {
	f.Add("Ada", "ada@example.com")
	f.Fuzz(func(t *testing.T, name, email string) {
		u := users.User{ID: uuid.Must(uuid.NewV7()), Email: email, FullName: name, CreatedAt: time.Unix(1, 5).UTC(), UpdatedAt: time.Unix(2, 0).UTC(), Version: 1}
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(restjson.FromUser(users.ToProto(u))); err != nil {
			t.Fatal(err)
		}
		if got := restjson.AppendUser(nil, u); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("got %s\nwant %s", got, want.Bytes())
		}
	})
}
