package server

import "net/http"

// withSecurityHeaders hardens every response: no MIME sniffing, and no
// caching of API answers, which carry personal data. The web page's files
// relax Cache-Control and add their Content-Security-Policy (webHandler).
func withSecurityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Shared, never modified slices: Header.Set would allocate two per
		// request.
		hd := w.Header()
		hd["X-Content-Type-Options"] = nosniff
		hd["Cache-Control"] = noStore
		h.ServeHTTP(w, r)
	})
}

var (
	nosniff = []string{"nosniff"}
	noStore = []string{"no-store"}
)

// pageCSP is the web page's Content-Security-Policy: scripts, styles and
// API calls from its own origin only, plus fetches to the token issuer
// (discovery and the code exchange of sign-in) when there is one.
func pageCSP(issuerOrigin string) string {
	connect := "'self'"
	if issuerOrigin != "" {
		connect += " " + issuerOrigin
	}
	return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src " + connect +
		"; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
}
