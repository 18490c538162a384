package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/acme/usersd/internal/devissuer"
	"github.com/acme/usersd/internal/logtest"
	"github.com/acme/usersd/internal/proctest"
	"github.com/acme/usersd/server"
	"github.com/acme/usersd/users"
	"github.com/acme/usersd/users/userstest"
)

// TestRESTBodies checks what the shim does with bodies that are not a
// valid CreateUser object, and with wrong methods.
func TestRESTBodies(t *testing.T) {
	t.Parallel()
	ts := setup(t, setupOpts{memory: true})
	hc := h1Client(t)
	hc.Transport = devissuer.Bearer{Token: ts.Admin, Base: hc.Transport}
	doc := openAPIValidator(t)
	cases := []struct {
		name, method, path, body string
		status                   int
		errName, field, allow    string
	}{
		{"array", "POST", "/users", `[]`, 400, "validation", "body", ""},
		{"string", "POST", "/users", `"x"`, 400, "validation", "body", ""},
		{"null", "POST", "/users", `null`, 400, "validation", "body", ""},
		{"empty", "POST", "/users", ``, 400, "validation", "body", ""},
		{"syntax error", "POST", "/users", `{"email":`, 400, "validation", "body", ""},
		{"unknown field", "POST", "/users", `{"email":"a@b.c","full_name":"A","admin":true}`, 400, "validation", "body", ""},
		{"wrong type", "POST", "/users", `{"email":"a@b.c","full_name":42}`, 400, "validation", "full_name", ""},
		{"two objects", "POST", "/users", `{"email":"a@b.c","full_name":"A"}{}`, 400, "validation", "body", ""},
		{"over 1 MiB", "POST", "/users", `{"email":"a@b.c","full_name":"` + strings.Repeat("x", 1<<20) + `"}`, 413, "too_large", "", ""},
		{"page_size not a number", "GET", "/users?page_size=ten", "", 400, "validation", "page_size", ""},
		{"empty id", "GET", "/users/%20", "", 400, "validation", "id", ""},
		{"PUT /users", "PUT", "/users", "{}", 405, "method_not_allowed", "", "GET, HEAD, POST"},
		{"PUT /users/{id}", "PUT", "/users/0190c3b6-6f2e-7c4a-9d3e-2b5f8a1c0d4e", "{}", 405, "method_not_allowed", "", "GET, HEAD, PATCH, DELETE"},
		{"PATCH array", "PATCH", "/users/0190c3b6-6f2e-7c4a-9d3e-2b5f8a1c0d4e", `[]`, 400, "validation", "body", ""},
		{"PATCH empty object", "PATCH", "/users/0190c3b6-6f2e-7c4a-9d3e-2b5f8a1c0d4e", `{}`, 400, "validation", "body", ""},
		{"PATCH unknown field", "PATCH", "/users/0190c3b6-6f2e-7c4a-9d3e-2b5f8a1c0d4e", `{"etag":"x"}`, 400, "validation", "body", ""},
		{"PATCH wrong type", "PATCH", "/users/0190c3b6-6f2e-7c4a-9d3e-2b5f8a1c0d4e", `{"email":null,"full_name":7}`, 400, "validation", "full_name", ""},
		{"PATCH malformed id", "PATCH", "/users/nope", `{"full_name":"x"}`, 400, "validation", "id", ""},
		{"PATCH over 1 MiB", "PATCH", "/users/0190c3b6-6f2e-7c4a-9d3e-2b5f8a1c0d4e", `{"full_name":"` + strings.Repeat("x", 1<<20) + `"}`, 413, "too_large", "", ""},
		{"DELETE malformed id", "DELETE", "/users/nope", "", 400, "validation", "id", ""},
		{"list by malformed email", "GET", "/users?email=nope", "", 400, "validation", "email", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tc.method, ts.URL+tc.path, strings.NewReader(tc.body))
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			// Every answer, 405s included, is one openapi.json describes.
			if err := doc.response(req, []byte(tc.body), resp, body); err != nil {
				t.Error(err)
			}
			var e struct{ Error, Message, Field string }
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("status %d, body not JSON: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != tc.status || e.Error != tc.errName || e.Field != tc.field || e.Message == "" {
				t.Errorf("got %d %+v, want %d error %q field %q", resp.StatusCode, e, tc.status, tc.errName, tc.field)
			}
			if got := resp.Header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
		})
	}
}

// TestCORS checks that only configured origins may call from a browser.
func TestCORS(t *testing.T) {
	t.Parallel()
	log := logtest.New(t)
	// Authentication off on purpose: preflights are answered before it.
	h := newHandler(t, userstest.NewMemory(), okHealth(), server.Options{
		Logger: log, CORSOrigins: []string{"http://app.example"},
	})
	closed := newHandler(t, userstest.NewMemory(), okHealth(), server.Options{Logger: log})

	preflight := func(h http.Handler, origin string) http.Header {
		req, _ := http.NewRequest(http.MethodOptions, "/users.v1.UserService/CreateUser", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "connect-protocol-version,content-type,x-grpc-web")
		rec := newRecorder()
		h.ServeHTTP(rec, req)
		return rec.Header()
	}
	if got := preflight(h, "http://app.example").Get("Access-Control-Allow-Origin"); got != "http://app.example" {
		t.Errorf("allowed origin: Access-Control-Allow-Origin = %q", got)
	}
	if got := preflight(h, "http://evil.example").Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("other origin: Access-Control-Allow-Origin = %q, want none", got)
	}
	if got := preflight(closed, "http://app.example").Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("no origins configured: Access-Control-Allow-Origin = %q, want none", got)
	}
}

// TestWebDir checks the static page: files with their types, index.html
// for "/", no listings.
func TestWebDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "index.html"), []byte("<!doctype html><title>usersd</title>"), 0o644))
	must(os.Mkdir(filepath.Join(dir, "assets"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "assets", "app.js"), []byte("console.log(1)"), 0o644))
	// Authentication off on purpose: the page's files are public anyway.
	h := newHandler(t, userstest.NewMemory(), okHealth(), server.Options{Logger: logtest.New(t), WebDir: dir, RequestTimeout: time.Second})
	for _, tc := range []struct {
		path   string
		status int
		ctype  string
	}{
		{"/", 200, "text/html; charset=utf-8"},
		{"/assets/app.js", 200, "text/javascript; charset=utf-8"},
		{"/assets/", 404, ""},
		{"/assets", 404, ""},
		{"/nope.html", 404, ""},
		{"/etc/passwd", 404, ""},
		{"/livez", 200, "application/json"},
	} {
		req, _ := http.NewRequest(http.MethodGet, tc.path, nil)
		rec := newRecorder()
		h.ServeHTTP(rec, req)
		if rec.code != tc.status || (tc.ctype != "" && rec.Header().Get("Content-Type") != tc.ctype) {
			t.Errorf("GET %s = %d %q, want %d %q", tc.path, rec.code, rec.Header().Get("Content-Type"), tc.status, tc.ctype)
		}
	}
}

// recorder is a minimal http.ResponseWriter.
type recorder struct {
	h    http.Header
	code int
}

func newRecorder() *recorder            { return &recorder{h: http.Header{}} }
func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return len(b), nil
}
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

// TestSlowBody: a client that trickles its body is cut off after the
// request timeout, on REST and Connect, and never gets a 500.
func TestSlowBody(t *testing.T) {
	t.Parallel()
	log := logtest.New(t)
	iss, v := testVerifier(t, log)
	token := iss.Token("slow", users.ScopeWrite)
	h := newHandler(t, userstest.NewMemory(), okHealth(), server.Options{Logger: log, RequestTimeout: time.Second, Verifier: v})
	srv := server.NewHTTPServer(h, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	for _, path := range []string{"/users", "/users.v1.UserService/CreateUser"} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"em", path, token)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		elapsed := time.Since(start)
		c.Close()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusInternalServerError || resp.StatusCode < 400 {
				t.Errorf("%s: status %d for a trickled body", path, resp.StatusCode)
			}
		}
		if elapsed > 5*time.Second {
			t.Errorf("%s: a stalled body held the request %v, want about the 1s request timeout", path, elapsed)
		}
		t.Logf("%s: %v after %v", path, statusOf(resp, err), elapsed)
	}
}

func statusOf(resp *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	return resp.Status
}

// TestTraceparentWithoutTracing: with tracing off, the caller's trace id
// still reaches the access line, on RPCs and REST.
func TestTraceparentWithoutTracing(t *testing.T) {
	t.Parallel()
	var logs proctest.SyncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	// Authentication off on purpose: the trace id must reach the log
	// whatever the answer.
	h := newHandler(t, userstest.NewMemory(), okHealth(), server.Options{Logger: log})
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, req := range []*http.Request{
		httptestRequest(http.MethodGet, "/users/0190c3b6-6f2e-7c4a-9d3e-2b5f8a1c0d4e", ""),
		httptestRequest(http.MethodPost, "/users.v1.UserService/GetUser", `{"id":"0190c3b6-6f2e-7c4a-9d3e-2b5f8a1c0d4e"}`),
	} {
		req.Header.Set("Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
		h.ServeHTTP(newRecorder(), req)
	}
	if n := strings.Count(logs.String(), `"trace_id":"`+traceID+`"`); n != 2 {
		t.Errorf("%d access lines carry the caller's trace id, want 2:\n%s", n, logs.String())
	}
}

func httptestRequest(method, path, body string) *http.Request {
	req, _ := http.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}
