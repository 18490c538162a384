// Package smtptest is a real SMTP server on loopback for tests (go-smtp),
// recording delivered mail and able to answer with scripted failures.
package smtptest

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one delivered mail.
type Message struct {
	From string
	To   []string
	Data string
}

// Server is an SMTP server that accepts mail unless Reply says otherwise.
type Server struct {
	Addr string

	mu       sync.Mutex
	msgs     []Message
	replies  []int // SMTP codes to answer DATA with, in order; 0 or exhausted accepts
	delay    time.Duration
	attempts int
	arrived  chan struct{}
	closed   chan struct{}
}

// New starts a server closed when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{arrived: make(chan struct{}, 100), closed: make(chan struct{})}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { close(s.closed); _ = srv.Close(); <-done })
	return s
}

// Reply makes the next DATA commands answer with these codes (e.g. 451,
// 451); after them, mail is accepted.
func (s *Server) Reply(codes ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replies = append(s.replies, codes...)
}

// Delay makes every DATA command wait d before answering.
func (s *Server) Delay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Messages returns the mail accepted so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Attempts counts DATA commands, accepted or not.
func (s *Server) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

// Arrived is signalled at the start of each DATA command.
func (s *Server) Arrived() <-chan struct{} { return s.arrived }

type session struct {
	s    *Server
	from string
	to   []string
}

func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }
func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	x.from = from
	return nil
}
func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.to = append(x.to, to)
	return nil
}

func (x *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s := x.s
	select {
	case s.arrived <- struct{}{}:
	default:
	}
	s.mu.Lock()
	s.attempts++
	delay := s.delay
	code := 0
	if len(s.replies) > 0 {
		code, s.replies = s.replies[0], s.replies[1:]
	}
	s.mu.Unlock()
	select {
	case <-time.After(delay):
	case <-s.closed:
		return errors.New("server closed")
	}
	if code != 0 {
		return &smtp.SMTPError{Code: code, Message: "scripted failure"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, Message{From: x.from, To: x.to, Data: string(b)})
	return nil
}
