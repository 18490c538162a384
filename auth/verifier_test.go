package auth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/acme/usersd/auth"
	"github.com/acme/usersd/internal/devissuer"
	"github.com/acme/usersd/internal/logtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const audience = "usersd-test"

func testIssuer(t *testing.T, alg string) *devissuer.Issuer {
	return devissuer.StartTest(t, audience, alg)
}

type verifierOpts struct {
	jwksURL string
	clock   *fakeClock
}

func newVerifier(t *testing.T, iss *devissuer.Issuer, o verifierOpts) *auth.Verifier {
	t.Helper()
	cfg := auth.Config{Issuer: iss.URL(), Audience: audience, JWKSURL: o.jwksURL, Logger: logtest.New(t), RetryMax: 100 * time.Millisecond}
	if o.clock != nil {
		cfg.Now = o.clock.now
	}
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	waitReady(t, v)
	return v
}

func waitReady(t *testing.T, v *auth.Verifier) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !v.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("the verifier did not load the issuer's keys within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type fakeClock struct{ t atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.t.Store(time.Now().UnixNano())
	return c
}
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }

func TestVerifyAcceptsEachAlgorithm(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			iss := testIssuer(t, alg)
			v := newVerifier(t, iss, verifierOpts{})
			p, err := v.Verify(t.Context(), iss.Token("alice", "users:read", "users:write"))
			if err != nil {
				t.Fatal(err)
			}
			if p.Subject != "alice" || !p.Has("users:read") || !p.Has("users:write") || p.Has("admin") {
				t.Errorf("principal = %+v", p)
			}
		})
	}
}

func TestVerifyReadsScopeAndScp(t *testing.T) {
	t.Parallel()
	iss := testIssuer(t, "ES256")
	v := newVerifier(t, iss, verifierOpts{})
	for name, tc := range map[string]struct {
		claim string
		value any
		want  []string
	}{
		"scope string": {"scope", "users:read  users:write", []string{"users:read", "users:write"}},
		"scp string":   {"scp", "users:read", []string{"users:read"}},
		"scp array":    {"scp", []string{"users:read", "users:write"}, []string{"users:read", "users:write"}},
		"none":         {"other", "x", nil},
	} {
		t.Run(name, func(t *testing.T) {
			c := iss.Claims("bob-"+name, nil, time.Hour)
			c[tc.claim] = tc.value
			p, err := v.Verify(t.Context(), iss.Sign(c, iss.SigningKey()))
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(p.Scopes) != fmt.Sprint(tc.want) {
				t.Errorf("scopes = %q, want %q", p.Scopes, tc.want)
			}
		})
	}
}

func TestVerifyRefusesBadTokens(t *testing.T) {
	t.Parallel()
	iss := testIssuer(t, "RS256")
	v := newVerifier(t, iss, verifierOpts{})
	reasons := map[string]string{
		"bad signature":    "signature is invalid",
		"tampered payload": "signature is invalid",
		"alg none":         "algorithm is not accepted",
		"HS256":            "algorithm is not accepted",
		"wrong issuer":     "another issuer; usersd accepts tokens of " + iss.URL(),
		"wrong audience":   "another audience; usersd's is " + iss.Audience(),
		"expired":          "expired",
		"not yet valid":    "not valid yet",
		"issued in future": "issued in the future",
		"no exp":           "required claim (exp)",
		"no subject":       "no subject",
		"unknown key":      "key the issuer does not publish",
		"malformed":        "malformed",
		"garbage":          "malformed",
		"empty":            "malformed",
	}
	bad := devissuer.BadTokens(iss)
	if len(bad) != len(reasons) {
		t.Fatalf("%d bad tokens, %d reasons", len(bad), len(reasons))
	}
	for name, tok := range bad {
		t.Run(name, func(t *testing.T) {
			for range 2 { // the second time must not come from a cache
				p, err := v.Verify(t.Context(), tok)
				var te *auth.TokenError
				if !errors.As(err, &te) {
					t.Fatalf("Verify = %v, %v; want a TokenError", p, err)
				}
				if !strings.Contains(te.Error(), reasons[name]) {
					t.Errorf("reason %q, want it to say %q", te.Error(), reasons[name])
				}
				if tok != "" && strings.Contains(te.Error(), tok) {
					t.Errorf("the error quotes the token: %q", te.Error())
				}
			}
		})
	}
}

func TestVerifyLeeway(t *testing.T) {
	t.Parallel()
	iss := testIssuer(t, "ES256")
	v := newVerifier(t, iss, verifierOpts{})
	now := time.Now()
	for name, edit := range map[string]func(jwt.MapClaims){
		"expired 10s ago":      func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() },
		"valid from 10s ahead": func(c jwt.MapClaims) { c["nbf"] = now.Add(10 * time.Second).Unix() },
		"issued 10s from now":  func(c jwt.MapClaims) { c["iat"] = now.Add(10 * time.Second).Unix() },
	} {
		c := iss.Claims("skewed", nil, time.Hour)
		edit(c)
		if _, err := v.Verify(t.Context(), iss.Sign(c, iss.SigningKey())); err != nil {
			t.Errorf("%s: %v; want it accepted within the 30 s leeway", name, err)
		}
	}
}

// TestVerifyNeverFetchesKeysNamedByTheToken puts jku and x5u headers on a
// token signed by a stranger and checks nothing fetches them.
func TestVerifyNeverFetchesKeysNamedByTheToken(t *testing.T) {
	t.Parallel()
	iss := testIssuer(t, "RS256")
	v := newVerifier(t, iss, verifierOpts{})
	var hits atomic.Int64
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer evil.Close()
	stranger, _ := devissuer.NewKey("RS256")
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, iss.Claims("mallory", nil, time.Hour))
	tok.Header["kid"] = stranger.ID
	tok.Header["jku"] = evil.URL + "/jwks"
	tok.Header["x5u"] = evil.URL + "/cert"
	s, _ := tok.SignedString(stranger.Private)
	if _, err := v.Verify(t.Context(), s); err == nil {
		t.Fatal("a token signed by a key from its own jku was accepted")
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the verifier fetched %d URLs named by the token", n)
	}
}

// TestVerifyCachesTokens shows a verified token is not checked again: after
// its key is withdrawn from the JWKS (and the JWKS refreshed), the cached
// token still passes while a new token signed by the same key does not;
// once the token expires, the cache forgets it.
func TestVerifyCachesTokens(t *testing.T) {
	t.Parallel()
	iss := testIssuer(t, "RS256")
	clock := newFakeClock()
	v := newVerifier(t, iss, verifierOpts{clock: clock})
	old := iss.SigningKey()
	c := iss.Claims("carol", []string{"users:read"}, time.Hour)
	c["exp"] = clock.now().Add(2 * time.Minute).Unix()
	c["iat"], c["nbf"] = clock.now().Unix(), clock.now().Unix()
	cached := iss.Sign(c, old)
	if _, err := v.Verify(t.Context(), cached); err != nil {
		t.Fatal(err)
	}

	next, _ := devissuer.NewKey("RS256")
	iss.Rotate(next)
	iss.Withdraw(old.ID)
	// The first token with the new kid refreshes the JWKS: old is gone.
	if _, err := v.Verify(t.Context(), iss.Token("dave")); err != nil {
		t.Fatalf("token signed by the rotated-in key: %v", err)
	}
	if _, err := v.Verify(t.Context(), iss.Sign(iss.Claims("erin", nil, time.Hour), old)); err == nil {
		t.Fatal("a new token signed by the withdrawn key was accepted")
	}
	if p, err := v.Verify(t.Context(), cached); err != nil || p.Subject != "carol" {
		t.Fatalf("cached token: %v, %v; want it served from the cache", p, err)
	}
	clock.advance(2*time.Minute + auth.Leeway + time.Second)
	if _, err := v.Verify(t.Context(), cached); err == nil {
		t.Fatal("the cached token was accepted after exp + leeway")
	}
}

// TestUnknownKIDFlood sends a thousand tokens with random unknown key ids
// at once: they all fail, and the JWKS is fetched at most once more.
func TestUnknownKIDFlood(t *testing.T) {
	t.Parallel()
	iss := testIssuer(t, "ES256")
	v := newVerifier(t, iss, verifierOpts{})
	before := iss.JWKSFetches()
	stranger, _ := devissuer.NewKey("ES256")
	var wg sync.WaitGroup
	var accepted atomic.Int64
	start := time.Now()
	for i := range 1000 {
		k := &devissuer.Key{ID: fmt.Sprintf("forged-%d", i), Alg: stranger.Alg, Private: stranger.Private}
		tok := iss.Sign(iss.Claims("mallory", nil, time.Hour), k)
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), tok); err == nil {
				accepted.Add(1)
			}
		})
	}
	wg.Wait()
	if accepted.Load() != 0 {
		t.Fatalf("%d forged tokens accepted", accepted.Load())
	}
	if n := iss.JWKSFetches() - before; n > 1 {
		t.Errorf("the flood caused %d JWKS fetches; want at most 1", n)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the flood took %v: requests queued behind the refresh limiter", d)
	}
	// Real tokens still pass.
	if _, err := v.Verify(t.Context(), iss.Token("frank")); err != nil {
		t.Fatal(err)
	}
}

// TestIssuerUnreachableAtStart: keys unknown means ErrUnavailable; once the
// issuer answers, the background retry loads them.
func TestIssuerUnreachableAtStart(t *testing.T) {
	t.Parallel()
	iss := testIssuer(t, "EdDSA")
	iss.SetDown(true)
	v, err := auth.NewVerifier(auth.Config{Issuer: iss.URL(), Audience: audience, Logger: logtest.New(t), RetryMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	tok := iss.Token("grace", "users:read")
	time.Sleep(300 * time.Millisecond)
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("before the keys load: %v, want ErrUnavailable", err)
	}
	iss.SetDown(false)
	waitReady(t, v)
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	t.Run("explicit JWKS URL wins", func(t *testing.T) {
		t.Parallel()
		iss := testIssuer(t, "RS256")
		v := newVerifier(t, iss, verifierOpts{jwksURL: iss.URL() + "/jwks"})
		if n := iss.DiscoveryFetches(); n != 0 {
			t.Errorf("discovery fetched %d times with AUTH_JWKS_URL set", n)
		}
		if _, err := v.Verify(t.Context(), iss.Token("heidi")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a document naming another issuer is refused", func(t *testing.T) {
		t.Parallel()
		iss := testIssuer(t, "RS256")
		v, err := auth.NewVerifier(auth.Config{Issuer: iss.URL() + "/other", Audience: audience, Logger: logtest.New(t), RetryMax: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(v.Close)
		time.Sleep(300 * time.Millisecond)
		if v.Ready() {
			t.Fatal("keys loaded from a discovery document of another issuer")
		}
	})
	t.Run("config errors", func(t *testing.T) {
		t.Parallel()
		for _, cfg := range []auth.Config{
			{Issuer: "", Audience: "a"},
			{Issuer: "not a url", Audience: "a"},
			{Issuer: "ftp://x", Audience: "a"},
			{Issuer: "https://issuer.example", Audience: ""},
			{Issuer: "https://issuer.example", Audience: "a", JWKSURL: "/relative"},
		} {
			if v, err := auth.NewVerifier(cfg); err == nil {
				v.Close()
				t.Errorf("NewVerifier(%+v) accepted", cfg)
			}
		}
	})
}
