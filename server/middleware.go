package server

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// access is the record of one request that the middleware chain, the
// handlers and the Connect interceptor share through the request context:
// what its access log line says, and what the guard allowed it.
type access struct {
	protocol  string // connect, grpc, grpcweb, or http
	procedure string
	outcome   string    // Connect code, or REST error name
	subject   string    // the authenticated caller; never the token
	userID    uuid.UUID // the user a call reads or changes by id; never an email
	span      trace.SpanContext

	route string // the route the guard looked up: mux pattern or procedure
	rule  *rule  // the policy entry of the route; nil when it has none
	grant grant  // what the guard allowed
}

type accessKey struct{}

func setOutcome(ctx context.Context, outcome string) {
	if a, ok := ctx.Value(accessKey{}).(*access); ok {
		a.outcome = outcome
	}
}

// statusWriter records the status code; it keeps Flush and Unwrap
// available, which gRPC and streaming need.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// withAccessLog writes one structured line per request (at info level),
// records the duration of plain HTTP requests (RPCs are recorded by
// rpcInterceptor),
// and turns a panic in a plain HTTP handler into a 500 with the stack in
// the log.
func withAccessLog(log *slog.Logger, tel *telemetry, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// The record and the writer in one allocation.
		rec := &struct {
			a  access
			sw statusWriter
		}{access{protocol: "http"}, statusWriter{ResponseWriter: w}}
		a, sw := &rec.a, &rec.sw
		outer := r.Context() // without the caller's span: the access line adds the ids itself
		ctx := outer
		if !tel.tracing && r.Header.Get("Traceparent") != "" {
			// No spans, but the caller's trace still reaches our logs and,
			// through otelriver, the welcome job.
			ctx = tel.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
			a.span = trace.SpanContextFromContext(ctx)
		}
		r = r.WithContext(context.WithValue(ctx, accessKey{}, a))
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.ErrorContext(r.Context(), "panic", "panic", p, "stack", string(debug.Stack()))
				if sw.status == 0 {
					writeJSON(sw, http.StatusInternalServerError, restError{Error: errInternal.rest, Message: errInternal.message})
				}
				a.outcome = errInternal.rest
			}
			if a.procedure == "" && isRPC(r) {
				// Rejected before the interceptor ran (e.g. too large).
				rpcOutcome(a, r, sw)
			}
			elapsed := time.Since(start)
			// The mux sets Pattern on the request it gets, which is a copy
			// when the guard added the principal: the guard's record has it.
			pattern := cmp.Or(r.Pattern, a.route)
			if a.procedure == "" && pattern != "" {
				tel.recordHTTP(r.Context(), pattern, r.Method, sw.status, elapsed.Seconds())
			}
			if !log.Enabled(r.Context(), slog.LevelInfo) {
				return
			}
			route := cmp.Or(a.procedure, pattern, r.Method+" "+r.URL.Path)
			outcome := a.outcome
			if outcome == "" {
				outcome = "ok"
				if sw.status >= 400 {
					outcome = strings.ToLower(strings.ReplaceAll(http.StatusText(sw.status), " ", "_"))
				}
			}
			attrs := []slog.Attr{
				slog.String("protocol", a.protocol),
				slog.String("route", route),
				slog.String("outcome", outcome),
				slog.Int("status", sw.status),
				slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
				slog.String("http", r.Proto),
			}
			if a.subject != "" {
				attrs = append(attrs, slog.String("subject", a.subject))
			}
			if a.userID != uuid.Nil {
				attrs = append(attrs, slog.String("user_id", a.userID.String()))
			}
			if a.span.IsValid() {
				attrs = append(attrs, slog.String("trace_id", a.span.TraceID().String()), slog.String("span_id", a.span.SpanID().String()))
			}
			log.LogAttrs(outer, slog.LevelInfo, "request", attrs...)
		}()
		next.ServeHTTP(sw, r)
	})
}

// rpcInterceptor applies the server-side deadline (the client's, when it
// asked for a shorter one), records the RPC's duration by procedure,
// protocol and code, and fills in the access record.
func rpcInterceptor(timeout time.Duration, tel *telemetry) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			start := time.Now()
			if dl, ok := ctx.Deadline(); !ok || dl.Sub(start) > timeout {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			resp, err := next(ctx, req)
			outcome := "ok"
			if err != nil {
				outcome = connect.CodeOf(err).String()
			}
			protocol, procedure := req.Peer().Protocol, req.Spec().Procedure
			tel.recordRPC(ctx, procedure, protocol, outcome, time.Since(start).Seconds())
			if a, ok := ctx.Value(accessKey{}).(*access); ok {
				a.span = trace.SpanContextFromContext(ctx)
				a.protocol, a.procedure, a.outcome = protocol, procedure, outcome
			}
			return resp, err
		}
	}
}
func isRPC(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/users.v1.") || strings.HasPrefix(r.URL.Path, "/grpc.")
}

// rpcOutcome fills in an access record from the response alone.
func rpcOutcome(a *access, r *http.Request, w *statusWriter) {
	a.procedure = r.URL.Path
	ct := r.Header.Get("Content-Type")
	h := w.Header()
	status := h.Get("Grpc-Status")
	if status == "" {
		status = h.Get(http.TrailerPrefix + "Grpc-Status")
	}
	switch {
	case strings.HasPrefix(ct, "application/grpc-web"):
		a.protocol = "grpcweb"
	case strings.HasPrefix(ct, "application/grpc"):
		a.protocol = "grpc"
	default:
		a.protocol = "connect"
	}
	if a.protocol != "connect" && status != "" && a.outcome == "" {
		if n, err := strconv.Atoi(status); err == nil && n > 0 {
			a.outcome = connect.Code(n).String()
		}
	}
}

// noteUser records the id of the user a call is about in its access line
// and its span: ids, never emails, identify users in logs and traces.
func noteUser(ctx context.Context, id uuid.UUID) {
	if a, ok := ctx.Value(accessKey{}).(*access); ok {
		a.userID = id // formatted only if the access line is written
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.String("user.id", id.String()))
	}
}
