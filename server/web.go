package server

import (
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
)

// WebAuth is what the web page needs to sign in: the issuer and the
// client id registered there for the page, and the scopes to ask for.
type WebAuth struct {
	Issuer   string `json:"issuer,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Scope    string `json:"scope,omitempty"`
	Disabled bool   `json:"auth_disabled,omitempty"` // AUTH_DISABLED: the page calls without a token
}

// webHandler serves the built web page from dir: files only (no directory
// listings), with index.html for "/" alone, under the page's CSP.
func webHandler(dir, csp string) http.Handler {
	fsys := os.DirFS(dir)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed("GET, HEAD")(w, r)
			return
		}
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if name == "" {
			name = "index.html"
		}
		if fi, err := fs.Stat(fsys, name); err != nil || !fi.Mode().IsRegular() {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		// The sign-in redirect puts a one-time code in the page's URL: keep
		// it out of Referer headers.
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache") // revalidate: a new build shows at once
		http.ServeFileFS(w, r, fsys, name)
	})
}
