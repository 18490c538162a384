package server

import (
	"net/http"
	"net/netip"
	"testing"
	"time"
)

func TestClientIP(t *testing.T) {
	t.Parallel()
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	for _, tc := range []struct {
		name, remote, xff string
		trusted           []netip.Prefix
		want              string
	}{
		{"peer", "203.0.113.7:5555", "", nil, "203.0.113.7"},
		{"spoofed header from an untrusted peer", "203.0.113.7:5555", "198.51.100.1", proxies, "203.0.113.7"},
		{"header ignored without trusted proxies", "127.0.0.1:5555", "198.51.100.1", nil, "127.0.0.1"},
		{"through a trusted proxy", "10.1.2.3:5555", "198.51.100.1", proxies, "198.51.100.1"},
		{"client-sent prefix ignored", "10.1.2.3:5555", "6.6.6.6, 198.51.100.1", proxies, "198.51.100.1"},
		{"two trusted hops", "127.0.0.1:5555", "198.51.100.1, 10.9.9.9", proxies, "198.51.100.1"},
		{"garbage stops the walk", "10.1.2.3:5555", "198.51.100.1, junk", proxies, "10.1.2.3"},
		{"IPv4-mapped IPv6 peer", "[::ffff:203.0.113.7]:5555", "", nil, "203.0.113.7"},
		{"IPv6 keyed by /64", "[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:5555", "", nil, "2001:db8:1:2::"},
	} {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := clientIP(r, tc.trusted); got.String() != tc.want {
			t.Errorf("%s: clientIP = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestKeyedLimiter(t *testing.T) {
	t.Parallel()
	if ok, _ := (*keyedLimiter[string])(nil).allow("x", time.Now()); !ok {
		t.Error("a nil limiter (limit off) refused")
	}
	l := newKeyedLimiter[string](2) // burst 4
	now := time.Now()
	for i := range 4 {
		if ok, _ := l.allow("a", now); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.allow("a", now)
	if ok || wait <= 0 || wait > time.Second {
		t.Errorf("past the burst: ok %v, wait %v; want refused with a wait of about 500ms", ok, wait)
	}
	if ok, _ := l.allow("b", now); !ok {
		t.Error("another key refused")
	}
	if ok, _ := l.allow("a", now.Add(600*time.Millisecond)); !ok {
		t.Error("refused after the refill")
	}
	// Full buckets (the same as new ones) are swept once the map is large.
	for i := range limiterSweepAt {
		l.allow(string(rune('A'+i%26))+string(rune(i)), now)
	}
	l.allow("trigger", now.Add(time.Hour))
	if n := len(l.buckets); n > 1 {
		t.Errorf("%d buckets after a sweep an hour later, want the sweep to keep at most the new one", n)
	}
}
