// Package devissuer is a small OpenID issuer for development and tests: a
// discovery document, a JWKS, an authorization endpoint (code flow with
// PKCE, for browser sign-in) and a token endpoint, over real keys. It signs
// whatever subject and scopes it is asked for, so it must never face the
// internet: redirects go to loopback addresses only.
package devissuer

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Scopes are the scopes the sign-in form offers.
var Scopes = []string{"users:read", "users:write"}

// TokenTTL is the lifetime of the tokens the endpoints issue.
const TokenTTL = time.Hour

// Issuer is the development OpenID issuer. Its zero value is not usable;
// call New.
type Issuer struct {
	url      string
	audience string

	mu      sync.Mutex
	keys    []*Key // published in the JWKS
	signing *Key
	codes   map[string]grant

	jwksFetches      atomic.Int64
	discoveryFetches atomic.Int64
	down             atomic.Bool
}

// grant is an authorization code waiting to be exchanged.
type grant struct {
	clientID, redirectURI, challenge string
	subject                          string
	scopes                           []string
	expires                          time.Time
}

// New returns an issuer named url (its "iss") that issues tokens for
// audience and signs with key.
func New(url, audience string, key *Key) *Issuer {
	return &Issuer{
		url:      strings.TrimSuffix(url, "/"),
		audience: audience,
		keys:     []*Key{key},
		signing:  key,
		codes:    make(map[string]grant),
	}
}

// URL is the issuer identifier.
func (i *Issuer) URL() string { return i.url }

// Audience is the aud of the tokens it issues.
func (i *Issuer) Audience() string { return i.audience }

// Publish adds key to the JWKS without signing with it.
func (i *Issuer) Publish(key *Key) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = append(i.keys, key)
}

// Rotate publishes key and signs with it from now on; the old keys stay
// published, as an issuer does while tokens signed by them are alive.
func (i *Issuer) Rotate(key *Key) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = append(i.keys, key)
	i.signing = key
}

// Withdraw removes the key with id kid from the JWKS.
func (i *Issuer) Withdraw(kid string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = slices.DeleteFunc(i.keys, func(k *Key) bool { return k.ID == kid })
}

// SigningKey is the key new tokens are signed with.
func (i *Issuer) SigningKey() *Key {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.signing
}

// SetDown makes every endpoint answer 503 (true) or serve again (false).
func (i *Issuer) SetDown(down bool) { i.down.Store(down) }

// JWKSFetches counts requests for the JWKS.
func (i *Issuer) JWKSFetches() int64 { return i.jwksFetches.Load() }

// DiscoveryFetches counts requests for the discovery document.
func (i *Issuer) DiscoveryFetches() int64 { return i.discoveryFetches.Load() }

// Claims are the standard claims of a token for subject with scopes, valid
// for ttl from now.
func (i *Issuer) Claims(subject string, scopes []string, ttl time.Duration) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"iss": i.url,
		"aud": i.audience,
		"sub": subject,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(ttl).Unix(),
	}
	if len(scopes) > 0 {
		c["scope"] = strings.Join(scopes, " ")
	}
	return c
}

// Token is a valid access token for subject with scopes.
func (i *Issuer) Token(subject string, scopes ...string) string {
	return i.Sign(i.Claims(subject, scopes, TokenTTL), i.SigningKey())
}

// Sign signs claims with key, naming it in the kid header.
func (i *Issuer) Sign(claims jwt.Claims, key *Key) string {
	t := jwt.NewWithClaims(key.Method(), claims)
	t.Header["kid"] = key.ID
	s, err := t.SignedString(key.Private)
	if err != nil {
		panic(fmt.Sprintf("devissuer: sign: %v", err)) // only a broken key can fail
	}
	return s
}

// Handler serves the issuer's endpoints.
func (i *Issuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", i.discovery)
	mux.HandleFunc("GET /jwks", i.jwks)
	mux.HandleFunc("GET /authorize", i.authorizeForm)
	mux.HandleFunc("POST /authorize", i.authorize)
	mux.HandleFunc("POST /token", i.token)
	mux.HandleFunc("OPTIONS /token", i.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Browser apps on any loopback origin read discovery and exchange
		// codes; nothing here reads cookies.
		w.Header().Set("Access-Control-Allow-Origin", "*")
		if i.down.Load() {
			http.Error(w, "issuer down (test)", http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (i *Issuer) discovery(w http.ResponseWriter, _ *http.Request) {
	i.discoveryFetches.Add(1)
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                i.url,
		"jwks_uri":                              i.url + "/jwks",
		"authorization_endpoint":                i.url + "/authorize",
		"token_endpoint":                        i.url + "/token",
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{"authorization_code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256", "ES256", "EdDSA"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"none"},
		"scopes_supported":                      append([]string{"openid"}, Scopes...),
	})
}

func (i *Issuer) jwks(w http.ResponseWriter, r *http.Request) {
	i.jwksFetches.Add(1)
	i.mu.Lock()
	keys := slices.Clone(i.keys)
	i.mu.Unlock()
	var set jwkset.JWKSMarshal
	for _, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.Private.Public(), jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{ALG: jwkset.ALG(k.Alg), KID: k.ID, USE: jwkset.UseSig},
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	w.Header().Set("Cache-Control", "max-age=60")
	writeJSON(w, http.StatusOK, set)
}

// authorizeForm shows the sign-in form: who to be, and which scopes to grant.
func (i *Issuer) authorizeForm(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := checkAuthorize(q.Get("response_type"), q.Get("redirect_uri"), q.Get("code_challenge"), q.Get("code_challenge_method")); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	requested := strings.Fields(q.Get("scope"))
	var boxes strings.Builder
	for _, s := range Scopes {
		checked := ""
		if slices.Contains(requested, s) {
			checked = " checked"
		}
		fmt.Fprintf(&boxes, `<label><input type="checkbox" name="scope" value="%s"%s> %s</label><br>`, s, checked, s)
	}
	hidden := func(name string) string {
		return fmt.Sprintf(`<input type="hidden" name="%s" value="%s">`, name, html.EscapeString(q.Get(name)))
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; form-action *; style-src 'unsafe-inline'")
	fmt.Fprintf(w, `<!doctype html><html><head><meta charset="utf-8"><title>Development sign-in</title></head>
<body style="font-family: sans-serif; max-width: 30em; margin: 3em auto">
<h1>Development sign-in</h1>
<p>This issuer signs any subject with any scopes: it is for development only.</p>
<form method="post" action="/authorize">
<label>Subject <input name="subject" id="subject" value="dev-user" required></label><br>
%s
%s%s%s%s%s
<button type="submit" id="approve">Sign in</button>
</form></body></html>`, boxes.String(), hidden("client_id"), hidden("redirect_uri"), hidden("state"), hidden("code_challenge"), hidden("code_challenge_method"))
}

// authorize issues a code for the submitted form and redirects back.
func (i *Issuer) authorize(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	f := r.PostForm
	redirect := f.Get("redirect_uri")
	if err := checkAuthorize("code", redirect, f.Get("code_challenge"), f.Get("code_challenge_method")); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	subject := strings.TrimSpace(f.Get("subject"))
	if subject == "" {
		http.Error(w, "subject is required", http.StatusBadRequest)
		return
	}
	var scopes []string
	for _, s := range f["scope"] {
		if slices.Contains(Scopes, s) {
			scopes = append(scopes, s)
		}
	}
	code := randomString()
	i.mu.Lock()
	now := time.Now()
	for c, g := range i.codes {
		if now.After(g.expires) {
			delete(i.codes, c)
		}
	}
	i.codes[code] = grant{
		clientID: f.Get("client_id"), redirectURI: redirect, challenge: f.Get("code_challenge"),
		subject: subject, scopes: scopes, expires: now.Add(time.Minute),
	}
	i.mu.Unlock()
	sep := "?"
	if strings.Contains(redirect, "?") {
		sep = "&"
	}
	http.Redirect(w, r, redirect+sep+"code="+code+"&state="+url.QueryEscape(f.Get("state")), http.StatusSeeOther)
}

// token exchanges an authorization code (with its PKCE verifier) for an
// access token.
func (i *Issuer) token(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodOptions {
		w.Header().Set("Access-Control-Allow-Methods", "POST")
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, "invalid_request", "bad form")
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != "authorization_code" {
		oauthError(w, "unsupported_grant_type", "only authorization_code")
		return
	}
	i.mu.Lock()
	g, ok := i.codes[f.Get("code")]
	delete(i.codes, f.Get("code")) // a code is good for one exchange
	i.mu.Unlock()
	sum := sha256.Sum256([]byte(f.Get("code_verifier")))
	switch {
	case !ok || time.Now().After(g.expires):
		oauthError(w, "invalid_grant", "unknown or expired code")
		return
	case g.redirectURI != f.Get("redirect_uri") || g.clientID != f.Get("client_id"):
		oauthError(w, "invalid_grant", "redirect_uri or client_id does not match the authorization request")
		return
	case base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge:
		oauthError(w, "invalid_grant", "code_verifier does not match code_challenge")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": i.Token(g.subject, g.scopes...),
		"token_type":   "Bearer",
		"expires_in":   int(TokenTTL.Seconds()),
		"scope":        strings.Join(g.scopes, " "),
	})
}

// checkAuthorize accepts the code flow with S256 PKCE and a loopback
// redirect only.
func checkAuthorize(responseType, redirect, challenge, method string) error {
	if responseType != "code" {
		return fmt.Errorf("response_type must be code")
	}
	if challenge == "" || method != "S256" {
		return fmt.Errorf("PKCE with code_challenge_method=S256 is required")
	}
	if !isLoopbackURL(redirect) {
		return fmt.Errorf("redirect_uri must be an http(s) URL on localhost, 127.0.0.1 or [::1]")
	}
	return nil
}

func oauthError(w http.ResponseWriter, code, desc string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomString() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func isLoopbackURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}
