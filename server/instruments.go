package server

import (
	"context"
	"net/http"
	"strconv"
	"sync"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// instruments are the OpenTelemetry tracer, propagator and histograms
// that the Connect interceptor, the REST routes and the access middleware
// share. (The providers behind them, and their exporters, are the
// binary's to set up.)
type instruments struct {
	tp      trace.TracerProvider
	mp      metric.MeterProvider
	prop    propagation.TextMapPropagator
	tracing bool // a real tracer provider: worth creating REST spans

	// Request durations: http.server.request.duration for the plain HTTP
	// routes (REST shim, health), recorded by the access middleware, and
	// rpc.server.call.duration for RPCs, recorded by rpcInterceptor. Their
	// attribute sets are built once per combination (a handful of routes,
	// methods and codes), not per request.
	httpDuration metric.Float64Histogram
	rpcDuration  metric.Float64Histogram
	attrSets     sync.Map // attrKey -> metric.MeasurementOption
}

// attrKey identifies one attribute set of one histogram.
type attrKey struct {
	rpc     bool
	a, b, c string
}

func newInstruments(opts Options) (*instruments, error) {
	t := &instruments{
		tp:   opts.TracerProvider,
		mp:   opts.MeterProvider,
		prop: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
	if _, isNoop := t.tp.(tracenoop.TracerProvider); t.tp != nil && !isNoop {
		t.tracing = true
	}
	if t.tp == nil {
		t.tp = tracenoop.NewTracerProvider()
	}
	if t.mp == nil {
		t.mp = metricnoop.NewMeterProvider()
	}
	buckets := metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
	meter := t.mp.Meter("github.com/acme/usersd/server")
	var err error
	if t.httpDuration, err = meter.Float64Histogram("http.server.request.duration", metric.WithUnit("s"), buckets,
		metric.WithDescription("Duration of plain HTTP requests (REST shim and health).")); err != nil {
		return nil, err
	}
	if t.rpcDuration, err = meter.Float64Histogram("rpc.server.call.duration", metric.WithUnit("s"), buckets,
		metric.WithDescription("Duration of RPCs (Connect, gRPC, gRPC-Web).")); err != nil {
		return nil, err
	}
	return t, nil
}

// traced gives a REST route a server span named by its route, continuing
// the caller's trace, when tracing is on; its trace ids go to the access
// line. With tracing off it costs nothing. (Metrics come from the access
// middleware either way.)
func (t *instruments) traced(route string, h http.HandlerFunc) http.Handler {
	if !t.tracing {
		return h
	}
	return otelhttp.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSpan(r.Context())
		h(w, r)
	}), route,
		otelhttp.WithTracerProvider(t.tp),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithPropagators(t.prop),
		otelhttp.WithSpanNameFormatter(func(string, *http.Request) string { return route }),
	)
}

// recordHTTP adds one plain HTTP request to its histogram.
func (t *instruments) recordHTTP(ctx context.Context, route, method string, status int, seconds float64) {
	code := strconv.Itoa(status)
	t.httpDuration.Record(ctx, seconds, t.attrs(attrKey{false, route, method, code}, func() attribute.Set {
		return attribute.NewSet(
			attribute.String("http.route", route),
			attribute.String("http.request.method", method),
			attribute.String("http.response.status_code", code),
		)
	}))
}

// recordRPC adds one RPC to its histogram.
func (t *instruments) recordRPC(ctx context.Context, procedure, protocol, code string, seconds float64) {
	t.rpcDuration.Record(ctx, seconds, t.attrs(attrKey{true, procedure, protocol, code}, func() attribute.Set {
		return attribute.NewSet(
			attribute.String("rpc.method", procedure),
			attribute.String("rpc.system.name", protocol),
			attribute.String("rpc.response.status_code", code),
		)
	}))
}

func (t *instruments) attrs(key attrKey, build func() attribute.Set) metric.MeasurementOption {
	if opt, ok := t.attrSets.Load(key); ok {
		return opt.(metric.MeasurementOption)
	}
	opt, _ := t.attrSets.LoadOrStore(key, metric.WithAttributeSet(build()))
	return opt.(metric.MeasurementOption)
}

// setSpan records the request's span for the access log line.
func setSpan(ctx context.Context) {
	noteAccess(ctx, func(a *access) { a.span = trace.SpanContextFromContext(ctx) })
}
