package jobs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Mail is one plain-text message about one user.
type Mail struct {
	To, Subject, Body string
	Kind              string    // what the mail is, such as "welcome": safe to log
	UserID            uuid.UUID // the user it is about: safe to log
}

// Mailer delivers mail. An error wrapping ErrPermanent will not succeed on a
// retry; any other error may.
type Mailer interface {
	Send(ctx context.Context, m Mail) error
}

// ErrPermanent marks a delivery the server refused for good (SMTP 5xx).
var ErrPermanent = errors.New("permanent delivery failure")

// NewMailer returns an SMTP mailer for smtpURL (smtp://user:pass@host:port,
// STARTTLS when offered; smtps:// for implicit TLS), or, when smtpURL is
// empty, the development mailer, which sends nothing and logs that it did
// not.
func NewMailer(smtpURL, from string, log *slog.Logger) (Mailer, error) {
	if smtpURL == "" {
		return &LogMailer{Log: log}, nil
	}
	u, err := url.Parse(smtpURL)
	if err != nil {
		return nil, fmt.Errorf("SMTP_URL: %w", err)
	}
	if u.Scheme != "smtp" && u.Scheme != "smtps" {
		return nil, fmt.Errorf("SMTP_URL: scheme must be smtp or smtps, not %q", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New("SMTP_URL: no host")
	}
	addr, err := mail.ParseAddress(from)
	if err != nil {
		return nil, fmt.Errorf("MAIL_FROM: %w", err)
	}
	host := u.Host
	if u.Port() == "" {
		port := "587"
		if u.Scheme == "smtps" {
			port = "465"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	m := &SMTPMailer{addr: host, implicitTLS: u.Scheme == "smtps", from: addr, tlsConfig: &tls.Config{ServerName: u.Hostname()}}
	if u.User != nil {
		// net/smtp's PLAIN refuses to send the password over an
		// unencrypted connection to a remote host.
		pass, _ := u.User.Password()
		m.auth = smtp.PlainAuth("", u.User.Username(), pass, u.Hostname())
	}
	return m, nil
}

// LogMailer is the mailer for development, without an SMTP server: it
// logs that a mail would have gone out, naming the user by id only. The
// address, the subject line (which holds the name) and the body are
// personal data and never reach the log.
type LogMailer struct{ Log *slog.Logger }

// Send logs that m was not sent.
func (l *LogMailer) Send(ctx context.Context, m Mail) error {
	l.Log.InfoContext(ctx, "mail not sent: no SMTP_URL (development mailer)", "kind", m.Kind, "user_id", m.UserID)
	return nil
}

// SMTPMailer sends mail over SMTP.
type SMTPMailer struct {
	addr        string
	implicitTLS bool
	tlsConfig   *tls.Config
	auth        smtp.Auth
	from        *mail.Address
}

// Send delivers m in one SMTP conversation bounded by ctx.
func (s *SMTPMailer) Send(ctx context.Context, m Mail) error {
	err := s.send(ctx, m)
	if te, ok := errors.AsType[*textproto.Error](err); ok && te.Code >= 500 {
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	return err
}

func (s *SMTPMailer) send(ctx context.Context, m Mail) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("smtp dial: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(time.Minute))
	}
	// Cancellation (River's hard stop) interrupts a conversation blocked on
	// the network.
	defer context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })()
	if s.implicitTLS {
		conn = tls.Client(conn, s.tlsConfig)
	}
	c, err := smtp.NewClient(conn, s.tlsConfig.ServerName)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp greeting: %w", err)
	}
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		return fmt.Errorf("smtp hello: %w", err)
	}
	if !s.implicitTLS {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(s.tlsConfig); err != nil {
				return fmt.Errorf("smtp starttls: %w", err)
			}
		}
	}
	if s.auth != nil {
		if err := c.Auth(s.auth); err != nil {
			return fmt.Errorf("smtp auth: %w", err)
		}
	}
	if err := c.Mail(s.from.Address); err != nil {
		return fmt.Errorf("smtp MAIL FROM: %w", err)
	}
	if err := c.Rcpt(m.To); err != nil {
		return fmt.Errorf("smtp RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	if _, err := io.WriteString(w, s.render(m)); err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	// The server has accepted the mail: a failed QUIT must not cause a resend.
	_ = c.Quit()
	return nil
}

// render builds the RFC 5322 message with CRLF line ends.
func (s *SMTPMailer) render(m Mail) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\n", s.from.String())
	fmt.Fprintf(&b, "To: %s\r\n", (&mail.Address{Address: m.To}).String())
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", m.Subject))
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().UTC().Format(time.RFC1123Z))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(strings.ReplaceAll(m.Body, "\n", "\r\n"))
	return b.String()
}
