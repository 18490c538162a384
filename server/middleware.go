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

// access is the record of one request's access log line, which the
// layers inside the access middleware fill in through the request context.
// It only ever describes the request: nothing decides anything by it, and
// without the access middleware every note is dropped.
type access struct {
	protocol  string // connect, grpc, grpcweb, or http
	procedure string
	outcome   string    // Connect code, or REST error name
	subject   string    // the authenticated caller; never the token
	userID    uuid.UUID // the user a call reads or changes by id; never an email
	span      trace.SpanContext
	endpoint  string // the route the guard looked up: mux pattern or procedure
}

type accessKey struct{}

func noteAccess(ctx context.Context, fill func(*access)) {
	if a, ok := ctx.Value(accessKey{}).(*access); ok {
		fill(a)
	}
}

func setOutcome(ctx context.Context, outcome string) {
	noteAccess(ctx, func(a *access) { a.outcome = outcome })
}

// noteEndpoint records the route the guard found, which the access line
// and the request metrics are labelled with: the mux sets Pattern only on
// the request it gets, a copy when the guard added context values.
func noteEndpoint(ctx context.Context, endpoint string) {
	noteAccess(ctx, func(a *access) { a.endpoint = endpoint })
}

// noteSubject records the authenticated caller's subject.
func noteSubject(ctx context.Context, subject string) {
	noteAccess(ctx, func(a *access) { a.subject = subject })
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
func withAccessLog(log *slog.Logger, ins *instruments, isRPC func(*http.Request) bool, next http.Handler) http.Handler {
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
		if !ins.tracing && r.Header.Get("Traceparent") != "" {
			// No spans, but the caller's trace still reaches our logs and,
			// through otelriver, the welcome job.
			ctx = ins.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
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
			pattern := cmp.Or(r.Pattern, a.endpoint)
			if a.procedure == "" && pattern != "" {
				ins.recordHTTP(r.Context(), pattern, r.Method, sw.status, elapsed.Seconds())
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
func rpcInterceptor(timeout time.Duration, ins *instruments) connect.UnaryInterceptorFunc {
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
			ins.recordRPC(ctx, procedure, protocol, outcome, time.Since(start).Seconds())
			noteAccess(ctx, func(a *access) {
				a.span = trace.SpanContextFromContext(ctx)
				a.protocol, a.procedure, a.outcome = protocol, procedure, outcome
			})
			return resp, err
		}
	}
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

// NoteUser records the id of the user a call is about in its access line
// and its span: ids, never emails, identify users in logs and traces. It is
// the users.Options.NoteUser of the service New serves.
func NoteUser(ctx context.Context, id uuid.UUID) {
	noteAccess(ctx, func(a *access) { a.userID = id }) // formatted only if the access line is written
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.String("user.id", id.String()))
	}
}
