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

// telemetry is the OpenTelemetry set-up shared by the Connect interceptor,
// the REST routes and the access middleware.
type telemetry struct {
	tp      trace.TracerProvider
	mp      metric.MeterProvider
	prop    propagation.TextMapPropagator
	tracing bool // a real tracer provider: worth creating REST spans

	// httpDuration is http.server.request.duration for the plain HTTP
	// routes (REST shim, health), recorded by the access middleware with
	// attribute sets built once per route, method and status.
	httpDuration metric.Float64Histogram
	attrSets     sync.Map // httpAttrKey -> metric.MeasurementOption
}

type httpAttrKey struct {
	route, method string
	status        int
}

func newTelemetry(opts Options) (*telemetry, error) {
	t := &telemetry{
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
	var err error
	t.httpDuration, err = t.mp.Meter("github.com/acme/usersd/server").Float64Histogram("http.server.request.duration",
		metric.WithUnit("s"), metric.WithDescription("Duration of plain HTTP requests (REST shim and health)."),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	return t, err
}

// traced gives a REST route a server span named by its route, continuing
// the caller's trace, when tracing is on; its trace ids go to the access
// line. With tracing off it costs nothing. (Metrics come from the access
// middleware either way.)
func (t *telemetry) traced(route string, h http.HandlerFunc) http.Handler {
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

// recordHTTP adds one plain HTTP request to the duration histogram.
func (t *telemetry) recordHTTP(ctx context.Context, route, method string, status int, seconds float64) {
	key := httpAttrKey{route, method, status}
	opt, ok := t.attrSets.Load(key)
	if !ok {
		opt, _ = t.attrSets.LoadOrStore(key, metric.WithAttributeSet(attribute.NewSet(
			attribute.String("http.route", route),
			attribute.String("http.request.method", method),
			attribute.String("http.response.status_code", strconv.Itoa(status)),
		)))
	}
	t.httpDuration.Record(ctx, seconds, opt.(metric.MeasurementOption))
}

// setSpan records the request's span for the access log line.
func setSpan(ctx context.Context) {
	if a, ok := ctx.Value(accessKey{}).(*access); ok {
		a.span = trace.SpanContextFromContext(ctx)
	}
}
