//go:build !nodb

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/gen/users/v1/usersv1connect"
	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/internal/devissuer"
	"github.com/acme/usersd/internal/proctest"
	"github.com/acme/usersd/jobs"
	"github.com/acme/usersd/server"
)

// TestTelemetry runs usersd in-process with in-memory exporters and checks
// one trace per CreateUser on every protocol: the server span continues the
// caller's traceparent, SQL spans are its children, the welcome job's span
// links to it, and log lines carry its ids. /metrics holds what it should.
func TestTelemetry(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	mp, metrics, err := newPromMeterProvider(resource.Default())
	if err != nil {
		t.Fatal(err)
	}
	tel := &telemetry{tracing: true, tp: tp, mp: mp, metrics: metrics}
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})

	iss := devissuer.StartTest(t, "usersd", "ES256")
	token := iss.Token("telemetry-client", "users:read", "users:write")
	env := map[string]string{"DATABASE_URL": dbtest.URL(t), "RIVER_WORKERS": "2", "AUTH_ISSUER": iss.URL(), "AUTH_AUDIENCE": "usersd"}
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	logs := &proctest.SyncBuffer{}
	log := newLogger(cfg, logs)
	a, err := newApp(t.Context(), cfg, log, tel, &jobs.LogMailer{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.NewHTTPServer(a.handler, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = a.river.Stop(ctx)
		a.close()
	})
	base := "http://" + ln.Addr().String()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: devissuer.Bearer{Token: token, Base: tr}}
	for deadline := time.Now().Add(10 * time.Second); !a.verifier.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the issuer's keys did not load within 10 s")
		}
	}

	rpc := func(opts ...connect.ClientOption) func(traceparent, email string) error {
		c := usersv1connect.NewUserServiceClient(hc, base, opts...)
		return func(traceparent, email string) error {
			req := connect.NewRequest(&usersv1.CreateUserRequest{Email: email, FullName: "Traced"})
			req.Header().Set("traceparent", traceparent)
			_, err := c.CreateUser(context.Background(), req)
			return err
		}
	}
	protocols := []struct {
		name, spanName string
		create         func(traceparent, email string) error
	}{
		{"connect", "users.v1.UserService/CreateUser", rpc()},
		{"grpc", "users.v1.UserService/CreateUser", rpc(connect.WithGRPC())},
		{"rest", "POST /users", func(traceparent, email string) error {
			req, _ := http.NewRequest(http.MethodPost, base+"/users", strings.NewReader(`{"email":"`+email+`","full_name":"Traced"}`))
			req.Header.Set("traceparent", traceparent)
			resp, err := hc.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					t.Errorf("REST create: status %d", resp.StatusCode)
				}
			}
			return err
		}},
	}
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			traceID, parentID := randomHex(16), randomHex(8)
			if err := proto.create("00-"+traceID+"-"+parentID+"-01", proto.name+"@example.com"); err != nil {
				t.Fatal(err)
			}
			// Wait for the job's span; by then the request's spans have ended.
			var srvSpan sdktrace.ReadOnlySpan
			var inTrace []sdktrace.ReadOnlySpan
			work := 0
			deadline := time.Now().Add(15 * time.Second)
			for work == 0 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				srvSpan, inTrace, work = nil, nil, 0
				for _, s := range rec.Ended() {
					if s.SpanContext().TraceID().String() == traceID {
						inTrace = append(inTrace, s)
						if s.SpanKind() == trace.SpanKindServer {
							srvSpan = s
						}
					}
					if s.SpanContext().TraceID().String() == traceID && strings.HasPrefix(s.Name(), "river.work") {
						work++
					}
				}
			}
			if srvSpan == nil {
				t.Fatalf("no server span in trace %s", traceID)
			}
			if srvSpan.Name() != proto.spanName || srvSpan.Parent().SpanID().String() != parentID {
				t.Errorf("server span %q with parent %s, want %q with parent %s", srvSpan.Name(), srvSpan.Parent().SpanID(), proto.spanName, parentID)
			}
			if work != 1 {
				t.Errorf("%d welcome job spans in the trace, want 1", work)
			}
			// Every other span of the trace descends from the server span:
			// the SQL of the user's transaction, River's job insert, and the
			// job's work with its own SQL.
			ids := map[trace.SpanID]sdktrace.ReadOnlySpan{}
			var names []string
			for _, s := range inTrace {
				ids[s.SpanContext().SpanID()] = s
				names = append(names, s.Name())
			}
			for _, s := range inTrace {
				if s == srvSpan {
					continue
				}
				p := s
				for p != nil && p != srvSpan {
					p = ids[p.Parent().SpanID()]
				}
				if p == nil {
					t.Errorf("span %q does not descend from the server span", s.Name())
				}
			}
			for _, want := range []string{"BEGIN", "INSERT", "river.insert_many", "COMMIT", "river.work", "UPDATE"} {
				if !slices.Contains(names, want) {
					t.Errorf("trace lacks a %q span; it has %q", want, names)
				}
			}
			for _, s := range rec.Ended() {
				for _, a := range s.Attributes() {
					if strings.Contains(a.Value.Emit(), proto.name+"@example.com") {
						t.Errorf("span %q carries the email in %s: argument values must stay out of traces", s.Name(), a.Key)
					}
				}
			}
			// The access line carries the trace.
			found := false
			for line := range strings.Lines(logs.String()) {
				var rec struct {
					Msg     string
					TraceID string `json:"trace_id"`
				}
				if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "request" && rec.TraceID == traceID {
					found = true
				}
			}
			if !found {
				t.Errorf("no access log line with trace_id %s", traceID)
			}
		})
	}

	// Concurrent creates share batches: each request's span links to the
	// span of the batch that committed it.
	t.Run("group commit links", func(t *testing.T) {
		c := usersv1connect.NewUserServiceClient(hc, base)
		traceIDs := make([]string, 12)
		var wg sync.WaitGroup
		for i := range traceIDs {
			traceIDs[i] = randomHex(16)
			wg.Go(func() {
				req := connect.NewRequest(&usersv1.CreateUserRequest{Email: fmt.Sprintf("linked%d@example.com", i), FullName: "Linked"})
				req.Header().Set("traceparent", "00-"+traceIDs[i]+"-"+randomHex(8)+"-01")
				if _, err := c.CreateUser(t.Context(), req); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		batches := map[trace.SpanID]sdktrace.ReadOnlySpan{}
		for _, s := range rec.Ended() {
			if s.Name() == "users.create_batch" {
				batches[s.SpanContext().SpanID()] = s
			}
		}
		for _, id := range traceIDs {
			var srv sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.SpanContext().TraceID().String() == id && s.SpanKind() == trace.SpanKindServer {
					srv = s
				}
			}
			if srv == nil {
				t.Errorf("no server span in trace %s", id)
				continue
			}
			linked := false
			for _, l := range srv.Links() {
				if b, ok := batches[l.SpanContext.SpanID()]; ok && slices.ContainsFunc(b.Attributes(), func(a attribute.KeyValue) bool { return a.Key == "users.batch_size" }) {
					linked = true
				}
			}
			if !linked {
				t.Errorf("the server span of trace %s links to no users.create_batch span: %v", id, srv.Links())
			}
		}
	})

	// A delete's spans carry the user's id, never the email.
	t.Run("delete", func(t *testing.T) {
		c := usersv1connect.NewUserServiceClient(hc, base)
		const email = "traced-delete@example.com"
		created, err := c.CreateUser(t.Context(), connect.NewRequest(&usersv1.CreateUserRequest{Email: email, FullName: "Traced"}))
		if err != nil {
			t.Fatal(err)
		}
		id := created.Msg.User.Id
		traceID := randomHex(16)
		req := connect.NewRequest(&usersv1.DeleteUserRequest{Id: id})
		req.Header().Set("traceparent", "00-"+traceID+"-"+randomHex(8)+"-01")
		if _, err := c.DeleteUser(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		var srv sdktrace.ReadOnlySpan
		for deadline := time.Now().Add(5 * time.Second); srv == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			for _, s := range rec.Ended() {
				if s.SpanContext().TraceID().String() == traceID && s.SpanKind() == trace.SpanKindServer {
					srv = s
				}
			}
		}
		if srv == nil {
			t.Fatal("no server span for the delete")
		}
		if !slices.ContainsFunc(srv.Attributes(), func(a attribute.KeyValue) bool { return a.Key == "user.id" && a.Value.AsString() == id }) {
			t.Errorf("the delete's server span lacks user.id=%s: %v", id, srv.Attributes())
		}
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID().String() != traceID {
				continue
			}
			for _, a := range s.Attributes() {
				if strings.Contains(a.Value.Emit(), email) {
					t.Errorf("span %q of the delete carries the email in %s", s.Name(), a.Key)
				}
			}
		}
	})

	// The access lines name the caller; no line holds its token.
	if !strings.Contains(logs.String(), `"subject":"telemetry-client"`) {
		t.Error("no access line carries the caller's subject")
	}
	if strings.Contains(logs.String(), token) || strings.Contains(logs.String(), strings.Split(token, ".")[2]) {
		t.Error("a log line holds the bearer token")
	}

	// The welcome job's log line carries the job span's trace.
	if !strings.Contains(logs.String(), `"msg":"mail not sent`) {
		t.Error("no line of the development mailer logged")
	}
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, `"msg":"mail not sent`) && !strings.Contains(line, `"trace_id":"`) {
			t.Errorf("development mailer line without trace_id: %s", line)
		}
	}

	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := new(bytes.Buffer)
	_, _ = body.ReadFrom(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body.Bytes()))
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v", err)
	}
	for _, want := range []struct {
		name string
		typ  string
	}{
		{"rpc_server_call_duration_seconds", "HISTOGRAM"},
		{"http_server_request_duration_seconds", "HISTOGRAM"},
		{"pgxpool_total_connections", "GAUGE"},
		{"pgxpool_idle_connections", "GAUGE"},
		{"pgxpool_acquired_connections", "GAUGE"},
		{"pgxpool_empty_acquire_wait_time_nanoseconds_total", "COUNTER"},
		{"river_work_count_total", "COUNTER"},
		{"river_work_duration_histogram_seconds", "HISTOGRAM"},
		{"go_goroutines", "GAUGE"},
	} {
		f, ok := families[want.name]
		if !ok {
			var names []string
			for n := range families {
				names = append(names, n)
			}
			t.Errorf("/metrics lacks %s; it has %v", want.name, names)
			continue
		}
		if f.GetType().String() != want.typ {
			t.Errorf("%s is a %s, want %s", want.name, f.GetType(), want.typ)
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
