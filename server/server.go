// Package server is usersd's HTTP side: one handler tree serving the users
// API over Connect, gRPC and gRPC-Web, the REST shim, health, reflection and
// CORS, and the http.Server that speaks HTTP/1.1 and cleartext HTTP/2.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"connectrpc.com/connect"
	connectcors "connectrpc.com/cors"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"connectrpc.com/otelconnect"
	"github.com/rs/cors"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/acme/usersd/gen/users/v1/usersv1connect"
	"github.com/acme/usersd/store"
)

// Limits of the HTTP server.
const (
	MaxMessageBytes   = 64 << 10 // one Connect/gRPC message; more is resource_exhausted
	MaxHeaderBytes    = 32 << 10 // request headers; more is 431
	ReadHeaderTimeout = 5 * time.Second
	IdleTimeout       = 2 * time.Minute
	compressMinBytes  = 1 << 10 // smaller responses are not worth compressing
)

// Options configure the handler.
type Options struct {
	Logger         *slog.Logger
	RequestTimeout time.Duration           // server-side deadline of one request
	CORSOrigins    []string                // allowed cross-origin callers; empty allows none
	WebDir         string                  // built web page served at "/"; empty serves none
	Mounts         map[string]http.Handler // extra handlers by path prefix, e.g. River UI

	// OpenTelemetry; nil means no-op tracing and metrics, W3C propagation.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
}

// New returns the handler for every route of DESIGN.md.
func New(users *store.Users, health *Health, opts Options) (http.Handler, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	timeout := opts.RequestTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	svc := &service{users: users, log: log}
	tel, err := newTelemetry(opts)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	interceptors := []connect.Interceptor{rpcInterceptor(timeout, tel)}
	if tel.tracing {
		// Spans only: RPC metrics come from rpcInterceptor, traced or not.
		otelInterceptor, err := otelconnect.NewInterceptor(
			otelconnect.WithTracerProvider(tel.tp),
			otelconnect.WithPropagator(tel.prop),
			otelconnect.WithoutMetrics(),
			// Our callers' spans are the parents of ours: one trace per request.
			otelconnect.WithTrustRemote(),
		)
		if err != nil {
			return nil, fmt.Errorf("otelconnect: %w", err)
		}
		interceptors = append([]connect.Interceptor{otelInterceptor}, interceptors...)
	}

	handlerOpts := []connect.HandlerOption{
		connect.WithReadMaxBytes(MaxMessageBytes),
		connect.WithCompressMinBytes(compressMinBytes),
		connect.WithInterceptors(interceptors...),
		connect.WithRecover(func(ctx context.Context, spec connect.Spec, _ http.Header, p any) error {
			log.ErrorContext(ctx, "panic", "procedure", spec.Procedure, "panic", p, "stack", string(debug.Stack()))
			return connect.NewError(connect.CodeInternal, errors.New(errInternal.message))
		}),
	}

	mux := http.NewServeMux()
	mux.Handle(usersv1connect.NewUserServiceHandler(&connectHandler{svc: svc}, handlerOpts...))
	mux.Handle(grpchealth.NewHandler(health, handlerOpts...))
	reflector := grpcreflect.NewStaticReflector(usersv1connect.UserServiceName, grpchealth.HealthV1ServiceName)
	mux.Handle(grpcreflect.NewHandlerV1(reflector, handlerOpts...))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, handlerOpts...))

	r := &rest{svc: svc}
	mux.Handle("POST /users", tel.traced("POST /users", withTimeout(timeout, r.create)))
	mux.Handle("GET /users", tel.traced("GET /users", withTimeout(timeout, r.list)))
	mux.Handle("GET /users/{id}", tel.traced("GET /users/{id}", withTimeout(timeout, r.get)))
	mux.Handle("/users", methodNotAllowed("GET, HEAD, POST"))
	mux.Handle("/users/{id}", methodNotAllowed("GET, HEAD"))
	mux.HandleFunc("GET /healthz", health.serveHTTP)
	mux.HandleFunc("GET /livez", serveLivez)
	for prefix, h := range opts.Mounts {
		mux.Handle(prefix, h)
	}
	if opts.WebDir != "" {
		mux.Handle("/", webHandler(opts.WebDir))
	}

	return withAccessLog(log, tel, withReadDeadline(timeout, withCORS(opts.CORSOrigins, mux))), nil
}

// withReadDeadline bounds reading the request body by the request timeout,
// so a client trickling its body cannot hold a handler forever (the
// request's context deadline only starts once the body is read).
func withReadDeadline(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		h.ServeHTTP(w, r)
	})
}

// withTimeout gives a REST request the same server-side deadline as an RPC.
func withTimeout(d time.Duration, h http.HandlerFunc) http.HandlerFunc {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		h(w, r.WithContext(ctx))
	})
}

// withCORS lets the listed origins call every route from a browser, with the
// headers Connect, gRPC-Web and the REST shim need.
func withCORS(origins []string, h http.Handler) http.Handler {
	if len(origins) == 0 {
		return h
	}
	return cors.New(cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: connectcors.AllowedMethods(),
		AllowedHeaders: connectcors.AllowedHeaders(),
		ExposedHeaders: append(connectcors.ExposedHeaders(), "Location"),
		MaxAge:         7200,
	}).Handler(h)
}

// NewHTTPServer returns a server for h that speaks HTTP/1.1 and cleartext
// HTTP/2 with prior knowledge on one port, so Shutdown drains both.
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           h,
		Protocols:         &protocols,
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
