package devissuer

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// StartTest serves a new issuer, signing with a new key for alg, on a
// loopback port until the test ends.
func StartTest(t testing.TB, audience, alg string) *Issuer {
	t.Helper()
	key, err := NewKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	iss := New("http://"+srv.Listener.Addr().String(), audience, key)
	srv.Config.Handler = iss.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return iss
}

// Bearer is an http.RoundTripper that sends Token on every request.
type Bearer struct {
	Token string
	Base  http.RoundTripper // nil means http.DefaultTransport
}

func (b Bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.Token)
	base := b.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(r)
}
