// Command devissuer is the development OpenID issuer that `make run` starts
// next to usersd, and `make token` asks for a token. It signs whatever
// subject and scopes it is asked for: never expose it.
//
//	devissuer serve [-addr 127.0.0.1:8001] [-issuer URL] [-audience usersd] [-key .devissuer/key.pem]
//	devissuer token [-issuer URL] [-audience usersd] [-key .devissuer/key.pem] [-scope "users:read users:write"] [-sub dev-user] [-ttl 1h]
//
// Both read the same key file (created on first use), so a token printed
// by `token` verifies against the JWKS that `serve` publishes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/acme/usersd/internal/devissuer"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "devissuer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "serve" && args[0] != "token") {
		return errors.New("usage: devissuer serve|token [flags] (-h for the flags)")
	}
	fs := flag.NewFlagSet("devissuer "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8001", "serve: listen address")
	issuer := fs.String("issuer", "", `issuer URL, the tokens' "iss" (default http://<addr>)`)
	audience := fs.String("audience", "usersd", `the tokens' "aud"`)
	keyFile := fs.String("key", ".devissuer/key.pem", "signing key (PKCS#8 PEM), created when missing")
	scope := fs.String("scope", "users:read users:write", "token: space-separated scopes")
	sub := fs.String("sub", "dev-user", "token: subject")
	ttl := fs.Duration("ttl", devissuer.TokenTTL, "token: lifetime")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *issuer == "" {
		*issuer = "http://" + *addr
	}
	key, err := devissuer.LoadOrCreateKey(*keyFile)
	if err != nil {
		return err
	}
	iss := devissuer.New(*issuer, *audience, key)

	if args[0] == "token" {
		fmt.Fprintln(stdout, iss.Sign(iss.Claims(*sub, strings.Fields(*scope), *ttl), key))
		return nil
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	log.Info("devissuer listening", "issuer", iss.URL(), "audience", *audience, "kid", key.ID)
	srv := &http.Server{Handler: iss.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
