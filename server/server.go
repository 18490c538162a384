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
	"net/netip"
	"net/url"
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

	"github.com/acme/usersd/auth"
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
	Mounts         map[string]http.Handler // extra handlers by mux pattern; each needs a policy entry (GET /metrics), or see PublicMounts
	PublicMounts   map[string]http.Handler // extra handlers outside bearer authentication, which bring their own (River UI's basic auth)

	// Authentication and rate limits. A nil Verifier means authentication
	// is off (AUTH_DISABLED): every call is allowed, limited by client IP.
	Verifier       *auth.Verifier
	WebAuth        WebAuth        // served to the web page at /config.json
	RateLimitRPS   int            // per principal; 0 is no limit
	RateLimitIPRPS int            // per client IP, for requests without a valid token; 0 is no limit
	TrustedProxies []netip.Prefix // peers whose X-Forwarded-For names the client

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

	routes, err := newRoutes(svc, health, tel, timeout, handlerOpts, opts)
	if err != nil {
		return nil, err
	}
	g := newGuard(routes.mux, &guard{
		verifier: opts.Verifier,
		policy:   routes,
		byUser:   newKeyedLimiter[string](opts.RateLimitRPS),
		byIP:     newKeyedLimiter[netip.Addr](opts.RateLimitIPRPS),
		trusted:  opts.TrustedProxies,
		log:      log,
	}, handlerOpts)

	// The middleware chain, outermost first (DESIGN.md): the access log sees
	// every answer, including refusals; CORS answers preflights before
	// authentication, so browsers learn they may send Authorization.
	var h http.Handler = g
	h = withCORS(opts.CORSOrigins, h)
	h = withSecurityHeaders(h)
	h = withReadDeadline(timeout, h)
	h = withAccessLog(log, tel, h)
	return h, nil
}

// newRoutes registers every route on a mux, each with its policy entry.
func newRoutes(svc *service, health *Health, tel *telemetry, timeout time.Duration, handlerOpts []connect.HandlerOption, opts Options) (*policyTable, error) {
	routes := newPolicyTable(policy)
	var err error
	for pattern := range opts.PublicMounts {
		routes.rules[pattern] = &rule{public: true}
	}
	handle := func(pattern string, h http.Handler) {
		if err == nil {
			err = routes.handle(pattern, h)
		}
	}
	handle(usersv1connect.NewUserServiceHandler(&connectHandler{svc: svc}, handlerOpts...))
	handle(grpchealth.NewHandler(health, handlerOpts...))
	reflector := grpcreflect.NewStaticReflector(usersv1connect.UserServiceName, grpchealth.HealthV1ServiceName)
	handle(grpcreflect.NewHandlerV1(reflector, handlerOpts...))
	handle(grpcreflect.NewHandlerV1Alpha(reflector, handlerOpts...))

	r := &rest{svc: svc}
	handle("POST /users", tel.traced("POST /users", withTimeout(timeout, r.create)))
	handle("GET /users", tel.traced("GET /users", withTimeout(timeout, r.list)))
	handle("GET /users/{id}", tel.traced("GET /users/{id}", withTimeout(timeout, r.get)))
	handle("PATCH /users/{id}", tel.traced("PATCH /users/{id}", withTimeout(timeout, r.update)))
	handle("DELETE /users/{id}", tel.traced("DELETE /users/{id}", withTimeout(timeout, r.remove)))
	handle("/users", methodNotAllowed("GET, HEAD, POST"))
	handle("/users/{id}", methodNotAllowed("GET, HEAD, PATCH, DELETE"))
	handle("GET /openapi.json", http.HandlerFunc(serveOpenAPI))
	handle("GET /healthz", http.HandlerFunc(health.serveHTTP))
	handle("GET /livez", http.HandlerFunc(serveLivez))
	for pattern, h := range opts.Mounts {
		handle(pattern, h)
	}
	for pattern, h := range opts.PublicMounts {
		handle(pattern, h)
	}
	if opts.WebDir != "" {
		webAuth := opts.WebAuth
		webAuth.Disabled = opts.Verifier == nil
		handle("GET /config.json", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, webAuth)
		}))
		handle("/", webHandler(opts.WebDir, pageCSP(origin(opts.WebAuth.Issuer))))
	}
	if err != nil {
		return nil, err
	}
	return routes, nil
}

// origin is the scheme://host[:port] of an absolute URL, or "".
func origin(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// withReadDeadline bounds reading the request body by the request timeout,
// so a client trickling its body cannot hold a handler forever (the
// request's context deadline only starts once the body is read). A server
// whose ReadTimeout is no longer (usersd sets it to the request timeout)
// does that already for every request, more cheaply: over HTTP/2 a
// deadline set from the handler is a message to the connection's serve
// loop and a timer, on top of the timer ReadTimeout starts anyway.
func withReadDeadline(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); !ok || srv.ReadTimeout <= 0 || srv.ReadTimeout > d {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		}
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
		AllowedMethods: append(connectcors.AllowedMethods(), http.MethodPatch, http.MethodDelete),
		AllowedHeaders: append(connectcors.AllowedHeaders(), "Authorization", "If-Match"),
		ExposedHeaders: append(connectcors.ExposedHeaders(), "Location", "ETag", "Retry-After", "WWW-Authenticate"),
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
