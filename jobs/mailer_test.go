package jobs_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/acme/usersd/jobs"
	"github.com/acme/usersd/users"
)

// TestLogMailerLogsNoPersonalData: without SMTP_URL the welcome mail is
// logged as not sent, naming the user by id, never by address, name or
// the mail's text.
func TestLogMailerLogsNoPersonalData(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := jobs.NewMailer("", "usersd <no-reply@localhost>", log)
	if err != nil {
		t.Fatal(err)
	}
	u := users.User{ID: uuid.Must(uuid.NewV7()), Email: "ada.private@example.com", FullName: "Ada Lovelace", CreatedAt: time.Now()}
	if err := m.Send(t.Context(), jobs.WelcomeMail(u)); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, secret := range []string{"ada.private", "example.com", "Ada", "Lovelace", "welcome aboard"} {
		if strings.Contains(out, secret) {
			t.Errorf("the log mailer wrote %q: %s", secret, out)
		}
	}
	if !strings.Contains(out, u.ID.String()) || !strings.Contains(out, `"kind":"welcome"`) {
		t.Errorf("the log mailer's line does not name the user id and the mail's kind: %s", out)
	}
}
