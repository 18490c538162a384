package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/riverqueue/rivercontrib/otelriver"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/acme/usersd/store"
)

// telemetry holds the tracer and meter providers every instrumented piece
// shares, and the Prometheus handler for /metrics.
type telemetry struct {
	tracing  bool // an exporter is configured
	tp       trace.TracerProvider
	mp       metric.MeterProvider
	metrics  http.Handler
	shutdown func(context.Context) error
}

// newTelemetry configures OpenTelemetry from the standard OTEL_* variables.
// Traces are off unless OTEL_TRACES_EXPORTER names an exporter (otlp,
// console); then autoexport reads the endpoint, protocol and headers, and
// the SDK reads the sampler and resource variables. Metrics always feed
// /metrics, with Go runtime and process collectors.
func newTelemetry(ctx context.Context, getenv func(string) string) (*telemetry, error) {
	// W3C trace context and baggage, in from clients and out to River jobs.
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))

	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("usersd"), semconv.ServiceVersion(versionString())),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		return nil, fmt.Errorf("otel resource: %w", err)
	}

	t := &telemetry{tp: tracenoop.NewTracerProvider()}
	var shutdowns []func(context.Context) error
	exp, err := spanExporter(ctx, getenv)
	if err != nil {
		return nil, err
	}
	if exp != nil {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		t.tp, t.tracing = tp, true
		shutdowns = append(shutdowns, tp.Shutdown)
	}

	mp, metrics, err := newPromMeterProvider(res)
	if err != nil {
		return nil, err
	}
	t.mp, t.metrics = mp, metrics
	shutdowns = append(shutdowns, mp.Shutdown)

	t.shutdown = func(ctx context.Context) error {
		var errs []error
		for _, f := range shutdowns {
			errs = append(errs, f(ctx))
		}
		return errors.Join(errs...)
	}
	return t, nil
}

// spanExporter chooses the exporter as OTEL_TRACES_EXPORTER and
// OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL say; nil means tracing is off. The
// exporters read the other OTEL_EXPORTER_OTLP_* variables themselves, from
// the process environment (withDotEnv puts .env's there). (contrib's
// autoexport does the same but links the metric and log exporters too, a
// few MB of binary we do not use.)
func spanExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	switch name := getenv("OTEL_TRACES_EXPORTER"); name {
	case "", "none":
		return nil, nil
	case "console":
		return stdouttrace.New()
	case "otlp":
		proto := cmp.Or(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf")
		switch proto {
		case "http/protobuf":
			return otlptracehttp.New(ctx)
		case "grpc":
			return otlptracegrpc.New(ctx)
		}
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf or grpc, not %q", proto)
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER must be otlp, console or none, not %q", name)
	}
}

// newPromMeterProvider returns a meter provider read by a Prometheus
// handler, which also serves Go runtime and process metrics.
func newPromMeterProvider(res *resource.Resource) (*sdkmetric.MeterProvider, http.Handler, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	return mp, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}

// sqlTracer traces every statement as a child of the request's span,
// without argument values. With tracing off there is no tracer at all:
// pgx then skips the hooks on every query.
func (t *telemetry) sqlTracer() pgx.QueryTracer {
	if !t.tracing {
		return nil
	}
	return otelpgx.NewTracer(otelpgx.WithTracerProvider(t.tp), otelpgx.WithMeterProvider(metricnoop.NewMeterProvider()), otelpgx.WithSpanNameFunc(sqlSpanName))
}

// sqlSpanName names a statement's span by its verb: the first word, or for
// a WITH query the first verb that writes (the change a CTE makes is what
// the statement is about), else SELECT.
func sqlSpanName(stmt string) string {
	stmt = strings.TrimSpace(stmt)
	verb, _, _ := strings.Cut(stmt, " ")
	verb = strings.ToUpper(strings.TrimSpace(verb))
	if verb != "WITH" {
		return verb
	}
	upper := strings.ToUpper(stmt)
	first, name := len(upper), "SELECT"
	for _, w := range []string{"INSERT INTO ", "UPDATE ", "DELETE FROM "} {
		if i := strings.Index(upper, w); i >= 0 && i < first {
			first, name = i, strings.Fields(w)[0]
		}
	}
	return name
}

// storeOptions traces each batch of creates, when tracing is on.
func (t *telemetry) storeOptions() []store.UsersOption {
	if !t.tracing {
		return nil
	}
	return []store.UsersOption{store.WithTracer(t.tp.Tracer("github.com/acme/usersd/store"))}
}

// recordPoolStats publishes pgxpool's gauges (total, idle, acquired
// connections, acquire waits).
func (t *telemetry) recordPoolStats(db *store.DB) error {
	if err := otelpgx.RecordStats(db.Pool, otelpgx.WithStatsMeterProvider(t.mp)); err != nil {
		return fmt.Errorf("pool metrics: %w", err)
	}
	return nil
}

// recordReplicaStats publishes how reads are routed: reads served by
// the primary and by each replica (usersd.db.reads, labelled target=
// "primary" or "replica" and replica=host:port), and each replica's lag
// behind the primary's writes (usersd.db.replica.lag, seconds; absent
// while it is unusable).
func (t *telemetry) recordReplicaStats(r *store.Replicas) error {
	meter := t.mp.Meter("github.com/acme/usersd/store")
	reads, err := meter.Int64ObservableCounter("usersd.db.reads", metric.WithDescription("Reads of users and the change feed, by the database that served them."))
	if err != nil {
		return fmt.Errorf("replica metrics: %w", err)
	}
	lag, err := meter.Float64ObservableGauge("usersd.db.replica.lag", metric.WithUnit("s"),
		metric.WithDescription("How far each read replica is behind the primary's writes; 0 when it has replayed everything."))
	if err != nil {
		return fmt.Errorf("replica metrics: %w", err)
	}
	usable, err := meter.Int64ObservableGauge("usersd.db.replica.usable", metric.WithDescription("1 while a read replica can serve reads, else 0."))
	if err != nil {
		return fmt.Errorf("replica metrics: %w", err)
	}
	primary := metric.WithAttributes(attribute.String("target", "primary"))
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(reads, r.PrimaryReads(), primary)
		for _, st := range r.Stats() {
			attrs := metric.WithAttributes(attribute.String("target", "replica"), attribute.String("replica", st.Name))
			o.ObserveInt64(reads, st.Reads, attrs)
			o.ObserveInt64(usable, map[bool]int64{true: 1, false: 0}[st.Usable], metric.WithAttributes(attribute.String("replica", st.Name)))
			if st.Usable {
				o.ObserveFloat64(lag, st.Lag.Seconds(), metric.WithAttributes(attribute.String("replica", st.Name)))
			}
		}
		return nil
	}, reads, lag, usable)
	if err != nil {
		return fmt.Errorf("replica metrics: %w", err)
	}
	return nil
}

// riverMiddleware gives each job a work span in the trace of the request
// that enqueued it, and job counts and durations by kind and state.
func (t *telemetry) riverMiddleware() []rivertype.Middleware {
	return []rivertype.Middleware{
		&jobTraceParent{}, // outermost: sets the parent otelriver's span starts from
		otelriver.NewMiddleware(&otelriver.MiddlewareConfig{
			TracerProvider:         t.tp,
			MeterProvider:          t.mp,
			EnableTracePropagation: true,
		}),
	}
}

// jobTraceParent continues the enqueuing request's trace in the job: it
// makes the traceparent that otelriver stored in the job's metadata the
// parent of the work span (otelriver alone only links to it), so a
// CreateUser and its welcome mail read as one trace.
type jobTraceParent struct{ river.MiddlewareDefaults }

func (*jobTraceParent) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	var meta map[string]any
	if len(job.Metadata) > 0 && json.Unmarshal(job.Metadata, &meta) == nil {
		carrier := propagation.MapCarrier{}
		for _, k := range (propagation.TraceContext{}).Fields() {
			if v, ok := meta[k].(string); ok {
				carrier[k] = v
			}
		}
		ctx = propagation.TraceContext{}.Extract(ctx, carrier)
	}
	return doInner(ctx)
}

// traceHandler adds the trace and span ids of the context's span to every
// log record, so lines written while serving a request or working a job
// can be found from the trace.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(as)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
