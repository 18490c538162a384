package server_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/server"
	"github.com/acme/usersd/users"
	"github.com/acme/usersd/users/userstest"
)

// BenchmarkGetUserREST is usersd's own cost of a REST GetUser (the
// middleware, the guard, the domain and the JSON), without the network
// and with the in-memory store: what the allocation and CPU targets of
// the hot path are measured on. make bench measures the whole thing.
func BenchmarkGetUserREST(b *testing.B) {
	h, id := benchHandler(b)
	req := httptest.NewRequest(http.MethodGet, "/users/"+id, nil)
	req.RemoteAddr = "127.0.0.1:5555"
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// BenchmarkGetUserConnect is the same over Connect JSON (POST).
func BenchmarkGetUserConnect(b *testing.B) {
	h, id := benchHandler(b)
	body := `{"id":"` + id + `"}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/users.v1.UserService/GetUser", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.RemoteAddr = "127.0.0.1:5555"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

func benchHandler(b *testing.B) (http.Handler, string) {
	b.Helper()
	st := userstest.NewMemory()
	svc := users.New(st, users.Options{NoteUser: server.NoteUser})
	b.Cleanup(svc.Close)
	// Authentication off, on purpose: the bench is about serving.
	h, err := server.New(svc, okHealth(), server.Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		b.Fatal(err)
	}
	resp, err := svc.CreateUser(users.WithGrant(context.Background(), users.GrantAll()), &usersv1.CreateUserRequest{Email: "bench@example.com", FullName: "Bench User"})
	if err != nil {
		b.Fatal(err)
	}
	return h, resp.User.Id
}
