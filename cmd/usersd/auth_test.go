//go:build !nodb

package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/internal/devissuer"
	"github.com/acme/usersd/internal/proctest"
)

// TestBinaryAuthentication runs the built binary against a development
// issuer that is down at start-up: usersd starts anyway and answers
// unavailable; once the issuer is up, calls without a token are refused on
// every protocol and calls with one succeed; no log line holds the token.
func TestBinaryAuthentication(t *testing.T) {
	t.Parallel()
	iss := devissuer.StartTest(t, "usersd", "ES256")
	iss.SetDown(true)
	token := iss.Token("binary-test", "users:read", "users:write")
	p := proctest.Start(t, binary(t), map[string]string{
		"DATABASE_URL": dbtest.URL(t), "RIVER_WORKERS": "0",
		"AUTH_ISSUER": iss.URL(), "AUTH_AUDIENCE": "usersd",
	}, proctest.WaitReady())
	// Ready while the issuer is still down. A start-up that waited for it,
	// even for a while, would have logged a retry every 250 ms, 500 ms,
	// 1 s, ... before listening; a slow machine may fit one more in.
	out := p.Output.String()
	listening := strings.Index(out, `"msg":"usersd listening"`)
	if listening < 0 {
		t.Fatalf("ready, but no listening line:\n%s", out)
	}
	if n := strings.Count(out[:listening], "cannot load the issuer's keys yet"); n > 2 {
		t.Errorf("%d failed key loads before usersd listened: start-up waited for the issuer", n)
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Transport: &http.Transport{Protocols: &protocols}, Timeout: 10 * time.Second}
	defer h2.CloseIdleConnections()
	type answer struct {
		*http.Response
		body string
	}
	call := func(name, token string) answer {
		t.Helper()
		requests := map[string]func() *http.Request{
			"rest": func() *http.Request { r, _ := http.NewRequest("GET", p.URL+"/users?page_size=1", nil); return r },
			"connect": func() *http.Request {
				r, _ := http.NewRequest("POST", p.URL+"/users.v1.UserService/ListUsers", strings.NewReader("{}"))
				r.Header.Set("Content-Type", "application/json")
				return r
			},
			"connect-get": func() *http.Request {
				r, _ := http.NewRequest("GET", p.URL+"/users.v1.UserService/ListUsers?encoding=json&message=%7B%7D", nil)
				return r
			},
			// An empty gRPC message: a zero flag byte and a zero length.
			"grpc": func() *http.Request {
				r, _ := http.NewRequest("POST", p.URL+"/users.v1.UserService/ListUsers", strings.NewReader("\x00\x00\x00\x00\x00"))
				r.Header.Set("Content-Type", "application/grpc")
				r.Header.Set("TE", "trailers")
				return r
			},
			"grpc-web": func() *http.Request {
				r, _ := http.NewRequest("POST", p.URL+"/users.v1.UserService/ListUsers", strings.NewReader("\x00\x00\x00\x00\x00"))
				r.Header.Set("Content-Type", "application/grpc-web+proto")
				return r
			},
		}
		req := requests[name]()
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := h2.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return answer{resp, string(body)}
	}
	// The wire code of an answer: Connect's HTTP status, gRPC's status (in
	// headers, trailers, or gRPC-Web's trailer frame).
	code := func(a answer) string {
		if s := a.Header.Get("Grpc-Status") + a.Trailer.Get("Grpc-Status"); s != "" {
			return "grpc-status " + s
		}
		if _, frame, ok := strings.Cut(a.body, "grpc-status:"); ok && a.Header.Get("Content-Type") != "application/json" {
			return "grpc-status " + strings.TrimSpace(strings.SplitN(frame, "\r\n", 2)[0])
		}
		return a.Status
	}
	names := []string{"rest", "connect", "connect-get", "grpc", "grpc-web"}
	unavailable := map[string]string{"rest": "503 Service Unavailable", "connect": "503 Service Unavailable",
		"connect-get": "503 Service Unavailable", "grpc": "grpc-status 14", "grpc-web": "grpc-status 14"}
	for _, name := range names {
		if got := code(call(name, token)); got != unavailable[name] {
			t.Errorf("%s while the issuer is down: %s, want %s", name, got, unavailable[name])
		}
	}

	iss.SetDown(false)
	deadline := time.Now().Add(15 * time.Second)
	for call("rest", token).StatusCode != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("calls with a token still fail 15 s after the issuer came up")
		}
		time.Sleep(100 * time.Millisecond)
	}
	unauthenticated := map[string]string{"rest": "401 Unauthorized", "connect": "401 Unauthorized",
		"connect-get": "401 Unauthorized", "grpc": "grpc-status 16", "grpc-web": "grpc-status 16"}
	ok := map[string]string{"rest": "200 OK", "connect": "200 OK", "connect-get": "200 OK", "grpc": "grpc-status 0", "grpc-web": "grpc-status 0"}
	for _, name := range names {
		if got := code(call(name, "")); got != unauthenticated[name] {
			t.Errorf("%s without a token: %s, want %s", name, got, unauthenticated[name])
		}
		if got := code(call(name, token)); got != ok[name] {
			t.Errorf("%s with a token: %s, want %s", name, got, ok[name])
		}
	}
	logs := p.Output.String()
	if strings.Contains(logs, token) || strings.Contains(logs, strings.Split(token, ".")[2]) {
		t.Error("a log line holds the bearer token")
	}
	if !strings.Contains(logs, `"subject":"binary-test"`) {
		t.Error("no access line names the caller's subject")
	}
}

// TestBinaryAuthDisabled: AUTH_DISABLED=true serves without tokens and
// says so in a warning.
func TestBinaryAuthDisabled(t *testing.T) {
	t.Parallel()
	p := proctest.Start(t, binary(t), map[string]string{
		"DATABASE_URL": dbtest.URL(t), "RIVER_WORKERS": "0", "AUTH_DISABLED": "true",
	}, proctest.WaitReady())
	resp, err := http.Get(p.URL + "/users?page_size=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /users without a token: %d, want 200", resp.StatusCode)
	}
	if !strings.Contains(p.Output.String(), `"level":"WARN","msg":"AUTH_DISABLED=true: authentication is OFF`) {
		t.Errorf("no start-up warning about AUTH_DISABLED in:\n%s", p.Output.String())
	}
}
