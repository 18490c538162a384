package devissuer

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// BadTokens returns, by name, one token of every kind a verifier of iss's
// tokens must refuse, made with iss's real keys where a real key is needed.
func BadTokens(iss *Issuer) map[string]string {
	good := iss.SigningKey()
	stranger, err := NewKey(good.Alg)
	if err != nil {
		panic(err)
	}
	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := iss.Claims("mallory", []string{"users:read", "users:write"}, time.Hour)
		edit(c)
		return c
	}
	now := time.Now()
	// A stranger's key claiming the issuer's kid: the signature cannot match.
	forged := &Key{ID: good.ID, Alg: stranger.Alg, Private: stranger.Private}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(func(jwt.MapClaims) {})).SignedString(jwt.UnsafeAllowNoneSignatureType)
	// HMAC with the public key as the secret: the classic algorithm confusion.
	hmac := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(func(jwt.MapClaims) {}))
	hmac.Header["kid"] = good.ID
	pub := fmt.Sprint(good.Private.Public())
	hs, _ := hmac.SignedString([]byte(pub))
	// A real token whose payload is swapped for one granting more scopes.
	parts := strings.Split(iss.Token("mallory", "users:read"), ".")
	wider, _ := json.Marshal(claims(func(jwt.MapClaims) {}))
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(wider) + "." + parts[2]
	return map[string]string{
		"bad signature":    iss.Sign(claims(func(jwt.MapClaims) {}), forged),
		"tampered payload": tampered,
		"alg none":         none,
		"HS256":            hs,
		"wrong issuer":     iss.Sign(claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }), good),
		"wrong audience":   iss.Sign(claims(func(c jwt.MapClaims) { c["aud"] = "another-api" }), good),
		"expired":          iss.Sign(claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }), good),
		"not yet valid":    iss.Sign(claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() }), good),
		"issued in future": iss.Sign(claims(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() }), good),
		"no exp":           iss.Sign(claims(func(c jwt.MapClaims) { delete(c, "exp") }), good),
		"no subject":       iss.Sign(claims(func(c jwt.MapClaims) { delete(c, "sub") }), good),
		"unknown key":      iss.Sign(claims(func(jwt.MapClaims) {}), stranger),
		"malformed":        "not.a.jwt",
		"garbage":          "!!!!",
		"empty":            "",
	}
}
