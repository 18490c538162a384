package server_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/acme/usersd/internal/devissuer"
	"github.com/acme/usersd/server"
	"github.com/acme/usersd/users"
)

// wantCode checks that err is a *callError with code.
func wantCode(t *testing.T, what string, err error, code connect.Code) {
	t.Helper()
	var ce *callError
	if !errors.As(err, &ce) {
		t.Errorf("%s: err = %v, want %v", what, err, code)
		return
	}
	if ce.code != code {
		t.Errorf("%s: %v, want %v", what, ce, code)
	}
}

func wantOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v, want it allowed", what, err)
	}
}

// TestBadTokensEveryProtocol sends each kind of bad token through every
// client: all unauthenticated, none quoted back.
func TestBadTokensEveryProtocol(t *testing.T) {
	t.Parallel()
	ts := setup(t, setupOpts{memory: true})
	id := uuid.Must(uuid.NewV7()).String()
	for kind, token := range devissuer.BadTokens(ts.Issuer) {
		if token == "" {
			continue // no token at all is TestPolicyEveryClient's
		}
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			for name, c := range clientsAs(t, ts, token) {
				_, err := c.get(t.Context(), id)
				wantCode(t, name, err, connect.CodeUnauthenticated)
				var ce *callError
				if errors.As(err, &ce) && (strings.Contains(ce.msg, token) || !strings.Contains(ce.msg, "invalid bearer token")) {
					t.Errorf("%s: message %q; want the reason, never the token", name, ce.msg)
				}
			}
		})
	}
}

// TestAuthWireDetails checks what refusals look like on the wire: status,
// body and headers, on REST, Connect and gRPC.
func TestAuthWireDetails(t *testing.T) {
	t.Parallel()
	ts := setup(t, setupOpts{memory: true})
	hc := h2cClient(t)
	nobody := ts.Issuer.Token("wire-nobody")
	forged := devissuer.BadTokens(ts.Issuer)["bad signature"]
	id := uuid.Must(uuid.NewV7()).String()
	for _, tc := range []struct {
		name, method, path, ctype, body, token string
		status                                 int
		challenge                              string // WWW-Authenticate
		grpcStatus                             string
		errName                                string // REST error, or Connect code
	}{
		{"REST without token", "GET", "/users/" + id, "", "", "", 401, `Bearer realm="usersd"`, "", "unauthenticated"},
		{"REST with a forged token", "GET", "/users/" + id, "", "", forged, 401, `Bearer realm="usersd", error="invalid_token"`, "", "unauthenticated"},
		{"REST without permission", "GET", "/users", "", "", nobody, 403, "", "", "forbidden"},
		{"Connect without token", "POST", "/users.v1.UserService/GetUser", "application/json", `{"id":"` + id + `"}`, "", 401, `Bearer realm="usersd"`, "", "unauthenticated"},
		{"Connect without permission", "POST", "/users.v1.UserService/ListUsers", "application/json", `{}`, nobody, 403, "", "", "permission_denied"},
		// net/http will not send WWW-Authenticate as a trailer (RFC 9110
		// 6.5.1): gRPC clients go by grpc-status alone.
		{"gRPC without token", "POST", "/users.v1.UserService/GetUser", "application/grpc", "", "", 200, "", "16", ""},
		{"gRPC without permission", "POST", "/users.v1.UserService/ListUsers", "application/grpc", "", nobody, 200, "", "7", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tc.method, ts.URL+tc.path, strings.NewReader(tc.body))
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.grpcStatus != "" {
				// gRPC sends status and metadata in trailers.
				_, _ = io.Copy(io.Discard, resp.Body)
				if got := resp.Trailer.Get("Grpc-Status"); got != tc.grpcStatus {
					t.Errorf("grpc-status %q, want %s", got, tc.grpcStatus)
				}
				return
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tc.challenge)
			}
			var body struct{ Error, Code, Message string }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("body: %v", err)
			}
			if got := body.Error + body.Code; got != tc.errName || body.Message == "" {
				t.Errorf("body %+v, want error %q with a message", body, tc.errName)
			}
		})
	}
}

// TestAuthUnavailableUntilKeysLoad starts usersd while the issuer is down:
// authenticated calls are unavailable on every client (public routes serve),
// and once the issuer answers the background retry loads its keys.
func TestAuthUnavailableUntilKeysLoad(t *testing.T) {
	t.Parallel()
	ts := setup(t, setupOpts{memory: true, issuerOff: true})
	hc := h2cClient(t)
	for name, c := range clients(t, ts) {
		_, err := c.list(t.Context(), 1, "")
		wantCode(t, name+" while the issuer is down", err, connect.CodeUnavailable)
	}
	if got := httpStatus(t, hc, ts.URL+"/healthz"); got != 200 {
		t.Errorf("/healthz = %d while the issuer is down, want 200 (public)", got)
	}
	if got := grpcHealth(t, hc, ts.URL); got != "SERVING" {
		t.Errorf("gRPC health = %s while the issuer is down, want SERVING", got)
	}

	ts.Issuer.SetDown(false)
	all := clients(t, ts)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := all["rest"].list(t.Context(), 1, "")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %v 10 s after the issuer came back", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for name, c := range all {
		_, err := c.list(t.Context(), 1, "")
		wantOK(t, name+" after the issuer came back", err)
	}
}

// TestKeyRotation: a key the issuer adds is picked up without a restart,
// on every client.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	ts := setup(t, setupOpts{memory: true})
	for name, c := range clients(t, ts) {
		_, err := c.list(t.Context(), 1, "")
		wantOK(t, name+" before the rotation", err)
	}
	next, err := devissuer.NewKey("EdDSA")
	if err != nil {
		t.Fatal(err)
	}
	ts.Issuer.Rotate(next)
	rotated := ts.Issuer.Token("after-rotation", users.ScopeRead)
	for name, c := range clientsAs(t, ts, rotated) {
		_, err := c.list(t.Context(), 1, "")
		wantOK(t, name+" with a token signed by the new key", err)
	}
	for name, c := range clients(t, ts) {
		_, err := c.list(t.Context(), 1, "")
		wantOK(t, name+" with a token signed by the old key, still published", err)
	}
}

// TestUnknownKIDFloodOverHTTP: hundreds of concurrent requests with forged
// key ids get 401 and fetch the JWKS at most once more.
func TestUnknownKIDFloodOverHTTP(t *testing.T) {
	t.Parallel()
	ts := setup(t, setupOpts{memory: true})
	hc := h2cClient(t)
	before := ts.Issuer.JWKSFetches()
	stranger, err := devissuer.NewKey("RS256")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for i := range 300 {
		k := &devissuer.Key{ID: fmt.Sprintf("forged-%d", i), Alg: stranger.Alg, Private: stranger.Private}
		token := ts.Issuer.Sign(ts.Issuer.Claims("mallory", []string{users.ScopeRead}, time.Hour), k)
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, ts.URL+"/users?page_size=1", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := hc.Do(req)
			if err != nil || resp.StatusCode != http.StatusUnauthorized {
				wrong.Add(1)
			}
			if err == nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if n := wrong.Load(); n > 0 {
		t.Errorf("%d of 300 forged requests were not answered 401", n)
	}
	if n := ts.Issuer.JWKSFetches() - before; n > 1 {
		t.Errorf("the flood fetched the JWKS %d times, want at most 1", n)
	}
	_, err = clients(t, ts)["rest"].list(t.Context(), 1, "")
	wantOK(t, "a real token after the flood", err)
}

// TestRateLimits: the per-principal and per-client-IP limits answer 429 /
// resource_exhausted with Retry-After and recover; health is never limited.
func TestRateLimits(t *testing.T) {
	t.Parallel()
	// One request a second with a burst of two: easy to exhaust, quick to refill.
	ts := setup(t, setupOpts{memory: true, opts: server.Options{RateLimitRPS: 1, RateLimitIPRPS: 1}})
	hc := h2cClient(t)
	call := func(token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.URL+"/users?page_size=1", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	retryAfter := func(resp *http.Response) time.Duration {
		t.Helper()
		s, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if err != nil || s < 1 {
			t.Fatalf("Retry-After %q, want whole seconds", resp.Header.Get("Retry-After"))
		}
		return time.Duration(s) * time.Second
	}

	t.Run("per principal", func(t *testing.T) {
		token := ts.Issuer.Token("limited", users.ScopeRead)
		for i := range 2 {
			if resp := call(token); resp.StatusCode != 200 {
				t.Fatalf("call %d of the burst: %d", i+1, resp.StatusCode)
			}
		}
		// The bucket is the principal's on every protocol.
		for name, c := range clientsAs(t, ts, token) {
			if name == "rest" || name == "grpc-go" || name == "connect-proto" {
				_, err := c.list(t.Context(), 1, "")
				wantCode(t, name+" over the limit", err, connect.CodeResourceExhausted)
			}
		}
		resp := call(token)
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("over the limit: %d, want 429", resp.StatusCode)
		}
		// Another principal is not affected.
		if resp := call(ts.Admin); resp.StatusCode != 200 {
			t.Errorf("another principal: %d, want 200", resp.StatusCode)
		}
		time.Sleep(retryAfter(resp))
		if resp := call(token); resp.StatusCode != 200 {
			t.Errorf("after Retry-After: %d, want 200", resp.StatusCode)
		}
	})

	t.Run("per client IP without a valid token", func(t *testing.T) {
		var resp *http.Response
		for range 2 {
			if resp = call(""); resp.StatusCode != 401 {
				t.Fatalf("within the IP's burst: %d, want 401", resp.StatusCode)
			}
		}
		if resp = call("not.a.token"); resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("over the IP's limit: %d, want 429", resp.StatusCode)
		}
		// Valid tokens are limited by principal, not by IP.
		if got := call(ts.Issuer.Token("other-principal", users.ScopeRead)); got.StatusCode != 200 {
			t.Errorf("a valid token from the same IP: %d, want 200", got.StatusCode)
		}
		// Health, liveness and metrics are never limited.
		for range 20 {
			for _, path := range []string{"/healthz", "/livez"} {
				if got := httpStatus(t, hc, ts.URL+path); got != 200 {
					t.Fatalf("%s while the IP is limited: %d", path, got)
				}
			}
		}
		time.Sleep(retryAfter(resp))
		if resp := call(""); resp.StatusCode != 401 {
			t.Errorf("after Retry-After: %d, want 401 again", resp.StatusCode)
		}
	})
}

// TestResponseHardening: nosniff and no-store on API answers and errors of
// every kind; the page's CSP allows itself and the issuer.
func TestResponseHardening(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("<!doctype html><title>usersd</title>"), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := setup(t, setupOpts{memory: true, opts: server.Options{WebDir: dir, WebAuth: server.WebAuth{ClientID: "usersd-web", Scope: "openid users:read"}}})
	hc := h2cClient(t)
	get := func(path, token string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, tc := range []struct{ path, token string }{
		{"/users?page_size=1", ts.Admin},
		{"/users", ""},
		{"/users/not-a-uuid", ts.Admin},
		{"/users.v1.UserService/ListUsers?encoding=json&message=%7B%7D", ts.Admin},
		{"/healthz", ""},
		{"/config.json", ""},
	} {
		resp := get(tc.path, tc.token)
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s (%d): nosniff %q, Cache-Control %q", tc.path, resp.StatusCode,
				resp.Header.Get("X-Content-Type-Options"), resp.Header.Get("Cache-Control"))
		}
	}
	page := get("/", "")
	csp := page.Header.Get("Content-Security-Policy")
	// The issuer is the only other origin the page may fetch from.
	for _, want := range []string{"default-src 'self'", "script-src 'self';", "connect-src 'self' " + ts.Issuer.URL() + ";", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("page CSP %q lacks %q", csp, want)
		}
	}
	var cfg server.WebAuth
	resp, err := hc.Get(ts.URL + "/config.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&cfg); err != nil || cfg.Issuer != ts.Issuer.URL() || cfg.ClientID != "usersd-web" || cfg.Disabled {
		t.Errorf("/config.json = %+v, %v", cfg, err)
	}
	if page.Header.Get("X-Content-Type-Options") != "nosniff" || page.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("page headers: %v", page.Header)
	}
}
