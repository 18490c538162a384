package server

import (
	"context"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// telemetry is the OpenTelemetry set-up shared by the Connect interceptor
// and the REST routes.
type telemetry struct {
	tp   trace.TracerProvider
	mp   metric.MeterProvider
	prop propagation.TextMapPropagator
}

func newTelemetry(opts Options) telemetry {
	t := telemetry{
		tp:   opts.TracerProvider,
		mp:   opts.MeterProvider,
		prop: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
	if t.tp == nil {
		t.tp = tracenoop.NewTracerProvider()
	}
	if t.mp == nil {
		t.mp = metricnoop.NewMeterProvider()
	}
	return t
}

// traced gives a REST route a server span named by its route, request
// metrics, and its trace ids in the access log.
func (t telemetry) traced(route string, h http.HandlerFunc) http.Handler {
	return otelhttp.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSpan(r.Context())
		h(w, r)
	}), route,
		otelhttp.WithTracerProvider(t.tp),
		otelhttp.WithMeterProvider(t.mp),
		otelhttp.WithPropagators(t.prop),
		otelhttp.WithSpanNameFormatter(func(string, *http.Request) string { return route }),
	)
}

// setSpan records the request's span for the access log line.
func setSpan(ctx context.Context) {
	if a, ok := ctx.Value(accessKey{}).(*access); ok {
		a.span = trace.SpanContextFromContext(ctx)
	}
}
