package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
)

// BasicAuth lets through only requests carrying user and password.
func BasicAuth(realm, user, password string, next http.Handler) http.Handler {
	wantUser, wantPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		// Compare digests in constant time, so neither length nor content leaks.
		gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		if !ok || subtle.ConstantTimeCompare(gotUser[:], wantUser[:])&subtle.ConstantTimeCompare(gotPass[:], wantPass[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+realm+`", charset="UTF-8"`)
			writeJSON(w, http.StatusUnauthorized, restError{Error: "unauthorized", Message: "credentials required"})
			return
		}
		next.ServeHTTP(w, r)
	})
}
