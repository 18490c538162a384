package jobs_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/jobs"
)

// TestDeliveryRefusesPrivateAddresses: without WEBHOOK_ALLOW_PRIVATE a
// delivery to loopback is refused when the connection is made, whatever
// the URL says (here a name that resolves to 127.0.0.1).
func TestDeliveryRefusesPrivateAddresses(t *testing.T) {
	t.Parallel()
	hit := false
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hit = true }))
	defer srv.Close()
	ev := &usersv1.UserEvent{Id: "x", Type: usersv1.UserEvent_TYPE_DELETED, UserId: "0190c3b6-6f2e-7c4a-9d3e-2b5f8a1c0d4e", OccurredAt: timestamppb.Now()}
	for _, url := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)} {
		err := jobs.Deliver(context.Background(), jobs.NewWebhookClient(false), url, []byte("k"), ev, time.Now())
		if err == nil || !strings.Contains(err.Error(), "WEBHOOK_ALLOW_PRIVATE") {
			t.Errorf("%s: err = %v, want the private address refused", url, err)
		}
	}
	if hit {
		t.Error("the private endpoint was reached")
	}
	if err := jobs.Deliver(context.Background(), jobs.NewWebhookClient(true), srv.URL, []byte("k"), ev, time.Now()); err != nil || !hit {
		t.Errorf("with private addresses allowed: %v (reached %v)", err, hit)
	}
}

// TestSignMatchesTheSpecification checks Sign against the example of the
// Standard Webhooks specification.
func TestSignMatchesTheSpecification(t *testing.T) {
	t.Parallel()
	// From the specification's README: secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,
	// msg_p5jXN8AQM9LWM0D4loKWxJek, timestamp 1614265330, body {"test": 2432232314}.
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	got := jobs.Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", []byte(`{"test": 2432232314}`))
	if got != "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" {
		t.Errorf("Sign = %s, want the specification's g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", got)
	}
}
