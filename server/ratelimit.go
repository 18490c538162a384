package server

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Bounds of a keyed limiter's memory.
const (
	limiterSweepAt    = 4096    // entries before idle ones are swept
	limiterMaxEntries = 100_000 // past this (after a sweep) new keys are not tracked
)

// keyedLimiter is one token bucket per key (principal or client IP): rps
// requests a second with a burst of twice that. A nil keyedLimiter allows
// everything (the limit is off).
type keyedLimiter[K comparable] struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[K]*rate.Limiter
}

func newKeyedLimiter[K comparable](rps int) *keyedLimiter[K] {
	if rps <= 0 {
		return nil
	}
	return &keyedLimiter[K]{limit: rate.Limit(rps), burst: 2 * rps, buckets: make(map[K]*rate.Limiter)}
}

// allow takes a token for key; when there is none it returns how long
// until there will be.
func (l *keyedLimiter[K]) allow(key K, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= limiterSweepAt {
			l.sweep(now)
		}
		b = rate.NewLimiter(l.limit, l.burst)
		if len(l.buckets) < limiterMaxEntries {
			l.buckets[key] = b
		}
	}
	l.mu.Unlock()
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// sweep forgets buckets that have refilled: a full bucket is the same as a
// new one.
func (l *keyedLimiter[K]) sweep(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
}

// rateLimitError is a request over its limit: resource_exhausted (429)
// with Retry-After.
type rateLimitError struct{ retryAfter time.Duration }

func (e *rateLimitError) Error() string {
	return fmt.Sprintf("too many requests: retry after %d s", e.seconds())
}

func (e *rateLimitError) seconds() int { return max(1, int((e.retryAfter+time.Second-1)/time.Second)) }

// clientIP is the address a request's rate limit is keyed by: the peer's,
// unless the peer is a trusted proxy, in which case the right-most address
// of X-Forwarded-For that is not a trusted proxy. IPv6 clients are keyed by
// their /64, which one host can easily span.
func clientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	ip := ap.Addr().Unmap()
	if len(trusted) > 0 && isTrusted(ip, trusted) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // an unparsable hop ends what can be trusted
			}
			ip = hop.Unmap()
			if !isTrusted(ip, trusted) {
				break
			}
		}
	}
	if ip.Is6() {
		ip = netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}

func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
