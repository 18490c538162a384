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
	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/gen/users/v1/usersv1connect"
	"github.com/acme/usersd/users"
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
	RequestTimeout time.Duration // server-side deadline of one request
	CORSOrigins    []string      // allowed cross-origin callers; empty allows none
	WebDir         string        // built web page served at "/"; empty serves none
	// Mounts are extra handlers by mux pattern, outside bearer
	// authentication: each is harmless to anyone (GET /metrics) or brings
	// its own (River UI's basic auth).
	Mounts map[string]http.Handler

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

// New returns the handler of every route (docs/design.md lists them): the
// users service on every protocol and the REST shim, both over svc, with
// health, reflection, the OpenAPI document and the web page.
func New(svc *users.Service, health *Health, opts Options) (http.Handler, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	timeout := opts.RequestTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	ins, err := newInstruments(opts)
	if err != nil {
		return nil, fmt.Errorf("instruments: %w", err)
	}
	handlerOpts, err := connectOptions(log, timeout, ins)
	if err != nil {
		return nil, err
	}
	routes := newRoutes(svc, health, ins, timeout, handlerOpts, opts, log)
	if routes.err != nil {
		return nil, routes.err
	}
	var h http.Handler = &guard{
		routes:   routes,
		verifier: opts.Verifier,
		byUser:   newKeyedLimiter[string](opts.RateLimitRPS),
		byIP:     newKeyedLimiter[netip.Addr](opts.RateLimitIPRPS),
		trusted:  opts.TrustedProxies,
		log:      log,
		rpcErrs:  connect.NewErrorWriter(handlerOpts...),
	}
	// The middleware chain, outermost first: the access log sees every
	// answer, including refusals; CORS answers preflights before
	// authentication, so browsers learn they may send Authorization.
	h = withCORS(opts.CORSOrigins, h)
	h = withSecurityHeaders(h)
	h = withReadDeadline(timeout, h)
	h = withAccessLog(log, ins, routes.isRPC, h)
	return h, nil
}

// connectOptions are the options of every Connect handler: limits, the
// RPC interceptor (with tracing when it is on), and a recovered panic as
// an internal error.
func connectOptions(log *slog.Logger, timeout time.Duration, ins *instruments) ([]connect.HandlerOption, error) {
	interceptors := []connect.Interceptor{rpcInterceptor(timeout, ins)}
	if ins.tracing {
		// Spans only: RPC metrics come from rpcInterceptor, traced or not.
		otelInterceptor, err := otelconnect.NewInterceptor(
			otelconnect.WithTracerProvider(ins.tp),
			otelconnect.WithPropagator(ins.prop),
			otelconnect.WithoutMetrics(),
			// Our callers' spans are the parents of ours: one trace per request.
			otelconnect.WithTrustRemote(),
		)
		if err != nil {
			return nil, fmt.Errorf("otelconnect: %w", err)
		}
		interceptors = append([]connect.Interceptor{otelInterceptor}, interceptors...)
	}
	return []connect.HandlerOption{
		connect.WithReadMaxBytes(MaxMessageBytes),
		connect.WithCompressMinBytes(compressMinBytes),
		connect.WithInterceptors(interceptors...),
		connect.WithRecover(func(ctx context.Context, spec connect.Spec, _ http.Header, p any) error {
			log.ErrorContext(ctx, "panic", "procedure", spec.Procedure, "panic", p, "stack", string(debug.Stack()))
			return connect.NewError(connect.CodeInternal, errors.New(errInternal.message))
		}),
	}, nil
}

// newRoutes registers every route, each with its rule; a registration
// that fails is in the table's err.
func newRoutes(svc *users.Service, health *Health, ins *instruments, timeout time.Duration, handlerOpts []connect.HandlerOption, opts Options, log *slog.Logger) *routeTable {
	t := newRouteTable()
	path, h := usersv1connect.NewUserServiceHandler(&connectHandler{svc: svc, log: log}, handlerOpts...)
	t.service(path, withoutDeadlinesForStreams(h), false)
	path, h = grpchealth.NewHandler(health, handlerOpts...)
	t.service(path, h, true)
	reflector := grpcreflect.NewStaticReflector(usersv1connect.UserServiceName, grpchealth.HealthV1ServiceName)
	path, h = grpcreflect.NewHandlerV1(reflector, handlerOpts...)
	t.service(path, h, true)
	path, h = grpcreflect.NewHandlerV1Alpha(reflector, handlerOpts...)
	t.service(path, h, true)

	r := &rest{svc: svc, log: log}
	restRoute := func(pattern, procedure string, h http.HandlerFunc) {
		t.rest(pattern, procedure, ins.traced(pattern, withTimeout(timeout, withConsistency(log, h))))
	}
	restRoute("POST /users", usersv1connect.UserServiceCreateUserProcedure, r.create)
	restRoute("GET /users", usersv1connect.UserServiceListUsersProcedure, r.list)
	restRoute("GET /users/{id}", usersv1connect.UserServiceGetUserProcedure, r.get)
	restRoute("PATCH /users/{id}", usersv1connect.UserServiceUpdateUserProcedure, r.update)
	restRoute("DELETE /users/{id}", usersv1connect.UserServiceDeleteUserProcedure, r.remove)
	t.plain("/users", authenticated, methodNotAllowed("GET, HEAD, POST"))
	t.plain("/users/{id}", authenticated, methodNotAllowed("GET, HEAD, PATCH, DELETE"))
	restRoute("GET /user-events", usersv1connect.UserServiceListUserEventsProcedure, r.listEvents)
	// A stream outlives the request timeout: no deadline of its own.
	t.rest("GET /user-events/stream", usersv1connect.UserServiceWatchUserEventsProcedure, ins.traced("GET /user-events/stream", withConsistency(log, r.streamEvents)))
	restRoute("POST /webhooks", usersv1connect.UserServiceCreateWebhookProcedure, r.createWebhook)
	restRoute("GET /webhooks", usersv1connect.UserServiceListWebhooksProcedure, r.listWebhooks)
	restRoute("DELETE /webhooks/{id}", usersv1connect.UserServiceDeleteWebhookProcedure, r.deleteWebhook)
	t.plain("/user-events", authenticated, methodNotAllowed("GET, HEAD"))
	t.plain("/user-events/stream", authenticated, methodNotAllowed("GET, HEAD"))
	t.plain("/webhooks", authenticated, methodNotAllowed("GET, HEAD, POST"))
	t.plain("/webhooks/{id}", authenticated, methodNotAllowed("DELETE"))

	t.plain("GET /openapi.json", public, http.HandlerFunc(serveOpenAPI))
	t.plain("GET /healthz", public, http.HandlerFunc(health.serveHTTP))
	t.plain("GET /livez", public, http.HandlerFunc(serveLivez))
	for pattern, h := range opts.Mounts {
		t.plain(pattern, public, h)
	}
	if opts.WebDir != "" {
		webAuth := opts.WebAuth
		webAuth.Disabled = opts.Verifier == nil
		t.plain("GET /config.json", public, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, webAuth)
		}))
		t.plain("/", public, webHandler(opts.WebDir, pageCSP(origin(opts.WebAuth.Issuer))))
	}
	return t
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

// withoutDeadlinesForStreams lifts the server's read deadline
// (ReadTimeout, the request timeout) for server-streaming procedures:
// their request is one small message, and their response lasts as long as
// the client watches. Over HTTP/1.1 an expired read deadline would end
// the request as if the client had gone.
func withoutDeadlinesForStreams(h http.Handler) http.Handler {
	streams := map[string]bool{}
	svc := usersv1.File_users_v1_users_proto.Services().ByName("UserService")
	for i := range svc.Methods().Len() {
		if m := svc.Methods().Get(i); m.IsStreamingServer() {
			streams["/"+string(svc.FullName())+"/"+string(m.Name())] = true
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if streams[r.URL.Path] {
			_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
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
		AllowedHeaders: append(connectcors.AllowedHeaders(), "Authorization", "If-Match", consistencyHeader),
		ExposedHeaders: append(connectcors.ExposedHeaders(), "Location", "ETag", "Retry-After", "WWW-Authenticate", consistencyHeader),
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
