package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/acme/usersd/users"
)

const (
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway = 30 * time.Second
	// maxTokenBytes bounds a bearer token; longer ones are malformed.
	maxTokenBytes = 16 << 10
	// fetchTimeout bounds one discovery or JWKS request.
	fetchTimeout = 10 * time.Second
	// maxDocBytes bounds the discovery document and the JWKS.
	maxDocBytes = 1 << 20
	// refreshInterval is how often the JWKS is fetched anyway, so keys the
	// issuer withdrew stop verifying without a restart.
	refreshInterval = 15 * time.Minute
	// unknownKIDWait bounds how long one request waits for the refresh its
	// unknown key id triggered (and for the limiter to allow it).
	unknownKIDWait = 5 * time.Second
)

// Methods are the signature algorithms accepted; anything else (none, HMAC,
// RSA-PSS, ...) is refused.
var Methods = []string{"RS256", "ES256", "EdDSA"}

// Config configures a Verifier.
type Config struct {
	Issuer   string // required: the OpenID issuer URL; tokens' iss must equal it
	Audience string // required: the aud every token must carry
	JWKSURL  string // optional: skips discovery of jwks_uri

	Logger *slog.Logger
	Client *http.Client // for discovery and the JWKS; default: bounded timeouts and sizes

	// UnknownKIDRefreshEvery is the least time between two JWKS refreshes
	// triggered by tokens with an unknown key id (default one minute), so
	// forged tokens cannot make usersd hammer the issuer.
	UnknownKIDRefreshEvery time.Duration
	// RetryMax caps the back-off between attempts to load the issuer's
	// keys at start-up (default 30s).
	RetryMax time.Duration
	// Now is the clock (tests).
	Now func() time.Time
}

// Verifier checks bearer tokens. Its keys load in the background: until
// they are known, Verify returns ErrUnavailable.
type Verifier struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client
	parser *jwt.Parser
	keys   atomic.Pointer[keySet]
	cache  *tokenCache

	stop context.CancelFunc
	done chan struct{}
}

type keySet struct {
	kf  keyfunc.Keyfunc
	url string
}

// NewVerifier checks cfg and starts loading the issuer's keys in the
// background (discovery, then the JWKS), retrying with back-off until it
// succeeds or Close is called. It does not wait for them.
func NewVerifier(cfg Config) (*Verifier, error) {
	if err := checkURL(cfg.Issuer); err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	if cfg.Audience == "" {
		return nil, errors.New("audience is required")
	}
	if cfg.JWKSURL != "" {
		if err := checkURL(cfg.JWKSURL); err != nil {
			return nil, fmt.Errorf("JWKS URL: %w", err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.UnknownKIDRefreshEvery <= 0 {
		cfg.UnknownKIDRefreshEvery = time.Minute
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{
			Timeout:   fetchTimeout,
			Transport: limitedBodies{http.DefaultTransport},
		}
	}
	v := &Verifier{
		cfg:    cfg,
		log:    cfg.Logger,
		client: client,
		parser: jwt.NewParser(
			jwt.WithValidMethods(Methods),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(Leeway),
			jwt.WithTimeFunc(cfg.Now),
		),
		cache: newTokenCache(),
		done:  make(chan struct{}),
	}
	ctx, stop := context.WithCancel(context.Background())
	v.stop = stop
	go v.load(ctx)
	return v, nil
}

// Close stops loading and refreshing keys.
func (v *Verifier) Close() {
	v.stop()
	<-v.done
}

// Ready reports whether the issuer's keys are known.
func (v *Verifier) Ready() bool { return v.keys.Load() != nil }

// Verify returns the principal of a valid token. A token that fails any
// check is a *TokenError; before the keys are known it is ErrUnavailable.
// Verified tokens are remembered until they expire.
func (v *Verifier) Verify(ctx context.Context, token string) (*users.Principal, error) {
	now := v.cfg.Now()
	if p, ok := v.cache.get(token, now); ok {
		return p, nil
	}
	ks := v.keys.Load()
	if ks == nil {
		return nil, ErrUnavailable
	}
	if len(token) > maxTokenBytes {
		return nil, &TokenError{Reason: "invalid bearer token: it is too long"}
	}
	var c claims
	if _, err := v.parser.ParseWithClaims(token, &c, ks.kf.KeyfuncCtx(ctx)); err != nil {
		return nil, &TokenError{Reason: "invalid bearer token: " + v.reason(err), err: err}
	}
	if c.Subject == "" {
		return nil, &TokenError{Reason: "invalid bearer token: it has no subject (sub)"}
	}
	p := &users.Principal{Subject: c.Subject, Scopes: c.scopes()}
	v.cache.put(token, p, c.ExpiresAt.Add(Leeway), now)
	return p, nil
}

// claims are the parts of an access token usersd reads. Scopes come from
// "scope" (a space-separated string, RFC 8693) or "scp" (a string or an
// array, as some issuers send them).
type claims struct {
	jwt.RegisteredClaims
	Scope string           `json:"scope,omitempty"`
	Scp   jwt.ClaimStrings `json:"scp,omitempty"`
}

func (c *claims) scopes() []string {
	out := strings.Fields(c.Scope)
	for _, s := range c.Scp {
		out = append(out, strings.Fields(s)...)
	}
	return out
}

// reason says, without quoting the token, why it was refused.
func (v *Verifier) reason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "it is malformed"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "it is signed by a key the issuer does not publish"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "its signature is invalid or its algorithm is not accepted (RS256, ES256, EdDSA)"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "it has expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "it is not valid yet"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "it was issued in the future"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		// The expected issuer is configuration, not a secret, and says
		// which token to get instead.
		return "it is from another issuer; usersd accepts tokens of " + v.cfg.Issuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "it is meant for another audience; usersd's is " + v.cfg.Audience
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "it lacks a required claim (exp)"
	}
	return "it cannot be verified"
}

// load fetches the issuer's keys, retrying with back-off, then leaves them
// to jwkset's refresh goroutine.
func (v *Verifier) load(ctx context.Context) {
	defer close(v.done)
	wait := 250 * time.Millisecond
	for {
		ks, err := v.loadOnce(ctx)
		if err == nil {
			v.keys.Store(ks)
			v.log.Info("auth: issuer keys loaded", "issuer", v.cfg.Issuer, "jwks_url", ks.url)
			<-ctx.Done()
			return
		}
		if ctx.Err() != nil {
			return
		}
		v.log.Warn("auth: cannot load the issuer's keys yet; authenticated calls are unavailable until then",
			"issuer", v.cfg.Issuer, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, v.cfg.RetryMax)
	}
}

func (v *Verifier) loadOnce(ctx context.Context) (*keySet, error) {
	jwksURL := v.cfg.JWKSURL
	if jwksURL == "" {
		var err error
		if jwksURL, err = v.discover(ctx); err != nil {
			return nil, err
		}
	}
	// The storage's refresh goroutine lives as long as sctx: cancelled here
	// when this attempt fails, by Close otherwise.
	sctx, cancel := context.WithCancel(ctx)
	ok := false
	defer func() {
		if !ok {
			cancel()
		}
	}()
	storage, err := jwkset.NewStorageFromHTTP(jwksURL, jwkset.HTTPClientStorageOptions{
		Client:          v.client,
		Ctx:             sctx,
		HTTPTimeout:     fetchTimeout,
		RefreshInterval: refreshInterval,
		RefreshErrorHandler: func(_ context.Context, err error) {
			v.log.Warn("auth: JWKS refresh failed; keeping the keys already loaded", "jwks_url", jwksURL, "err", err)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS %s: %w", jwksURL, err)
	}
	keys, err := storage.KeyReadAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("read JWKS %s: %w", jwksURL, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWKS %s has no usable keys", jwksURL)
	}
	client, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs: map[string]jwkset.Storage{jwksURL: storage},
		// An unknown key id refreshes the JWKS at most this often; a request
		// that finds the limiter empty fails at once instead of queueing.
		RefreshUnknownKID: rate.NewLimiter(rate.Every(v.cfg.UnknownKIDRefreshEvery), 1),
		RateLimitWaitMax:  unknownKIDWait,
	})
	if err != nil {
		return nil, fmt.Errorf("JWKS client: %w", err)
	}
	kf, err := keyfunc.New(keyfunc.Options{Ctx: sctx, Storage: client})
	if err != nil {
		return nil, fmt.Errorf("keyfunc: %w", err)
	}
	ok = true
	return &keySet{kf: kf, url: jwksURL}, nil
}

// discover reads jwks_uri from the issuer's OpenID configuration and checks
// that the document speaks for the configured issuer.
func (v *Verifier) discover(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(v.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("discovery: %s answered %s", u, resp.Status)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDocBytes)).Decode(&doc); err != nil {
		return "", fmt.Errorf("discovery: %s: %w", u, err)
	}
	if doc.Issuer != v.cfg.Issuer {
		return "", fmt.Errorf("discovery: %s names issuer %q, not %q", u, doc.Issuer, v.cfg.Issuer)
	}
	if err := checkURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("discovery: jwks_uri: %w", err)
	}
	return doc.JWKSURI, nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

// limitedBodies caps every response body it fetches at maxDocBytes.
type limitedBodies struct{ rt http.RoundTripper }

func (l limitedBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(r)
	if err == nil {
		resp.Body = limitedBody{io.LimitReader(resp.Body, maxDocBytes), resp.Body}
	}
	return resp, err
}

type limitedBody struct {
	io.Reader
	io.Closer
}
