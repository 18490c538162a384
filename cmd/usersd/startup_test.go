package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/acme/usersd/internal/proctest"
)

// TestBusyPortStopsStartup: a port that is taken (the API's, pprof's or
// metrics') stops start-up at once with one line naming its variable,
// before the database is touched (DATABASE_URL here leads nowhere).
func TestBusyPortStopsStartup(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, name := range []string{"BIND", "PPROF_BIND", "METRICS_BIND"} {
		env := map[string]string{
			"DATABASE_URL":  "postgres://u@127.0.0.1:1/db",
			"AUTH_DISABLED": "true", // on purpose: the test is about the ports
			"BIND":          "127.0.0.1:0",
			name:            busy.Addr().String(),
		}
		var logs bytes.Buffer
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		err := run(ctx, []string{"usersd"}, func(k string) string { return env[k] }, &logs)
		cancel()
		if err == nil || !strings.HasPrefix(err.Error(), name+" ") || !strings.Contains(err.Error(), "address already in use") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s taken: err = %v, want one line naming %s", name, err, name)
		}
		if logs.Len() != 0 {
			t.Errorf("%s taken: usersd logged before stopping: %s", name, logs.String())
		}
	}
}

// TestDotEnvReachesOpenTelemetry: OTEL_* variables in .env configure the
// exporter as they would from the environment (the SDK reads only the
// process environment).
func TestDotEnvReachesOpenTelemetry(t *testing.T) {
	// Not parallel: it changes the working directory and the environment.
	c := startCollector(t)
	dir := t.TempDir()
	dotenv := "OTEL_TRACES_EXPORTER=otlp\nOTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf\nOTEL_EXPORTER_OTLP_ENDPOINT=" + c.URL + "\n"
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(dotenv), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		t.Setenv(k, "") // restored when the test ends
	}
	getenv, err := withDotEnv(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	tel, err := newTelemetry(t.Context(), getenv)
	if err != nil {
		t.Fatal(err)
	}
	if !tel.tracing {
		t.Fatal("OTEL_TRACES_EXPORTER=otlp in .env did not turn tracing on")
	}
	_, span := tel.tp.Tracer("test").Start(t.Context(), "from-dotenv")
	span.End()
	if err := tel.shutdown(t.Context()); err != nil { // flushes the batch
		t.Fatalf("shutdown: %v", err)
	}
	var got []string
	for _, names := range c.traces() {
		got = append(got, names...)
	}
	if len(got) != 1 || got[0] != "from-dotenv" {
		t.Errorf("the collector named by .env received %v, want the one span", got)
	}
}

// collector is an OTLP/HTTP trace collector on loopback.
type collector struct {
	URL   string
	mu    sync.Mutex
	spans map[string][]string // trace id -> span names
}

func startCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{spans: map[string][]string{}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					id := hex.EncodeToString(s.TraceId)
					c.spans[id] = append(c.spans[id], s.Name)
				}
			}
		}
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(b)
	}), ReadHeaderTimeout: time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	c.URL = "http://" + ln.Addr().String()
	return c
}

// traces returns the span names received so far, by trace id.
func (c *collector) traces() map[string][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.spans)
}

// TestMakeRunStampsVersion: the binary make run builds reports the same
// version as make build and the image (scripts/version.sh), not (devel).
func TestMakeRunStampsVersion(t *testing.T) {
	t.Parallel()
	root := proctest.RepoRoot(t)
	want, err := exec.Command(filepath.Join(root, "scripts", "version.sh")).Output()
	if err != nil {
		t.Fatal(err)
	}
	run := exec.Command(filepath.Join(root, "scripts", "run.sh"), "version")
	// A database URL and AUTH_DISABLED, on purpose: run.sh then starts no
	// PostgreSQL and no issuer, and usersd only prints its version.
	run.Env = append(os.Environ(), "DATABASE_URL=postgres://u@127.0.0.1:1/db", "AUTH_DISABLED=true", "BIN="+t.TempDir())
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/run.sh version: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "usersd "+strings.TrimSpace(string(want)) {
		t.Errorf("make run's usersd says %q, want %q", got, "usersd "+strings.TrimSpace(string(want)))
	}
}

func TestSQLSpanName(t *testing.T) {
	t.Parallel()
	for stmt, want := range map[string]string{
		"SELECT 1":                           "SELECT",
		"\n\t\tINSERT INTO users VALUES (1)": "INSERT",
		"begin":                              "BEGIN",
		"WITH ins AS (INSERT INTO users ...), ev AS (INSERT INTO user_events ...) SELECT id FROM ins": "INSERT",
		"WITH lock AS MATERIALIZED (SELECT 1), upd AS (UPDATE users SET x = 1) SELECT * FROM upd":     "UPDATE",
		"WITH del AS (DELETE FROM users ...), erase AS (UPDATE user_events ...) SELECT count(*)":      "DELETE",
		"WITH h AS (SELECT 1) SELECT * FROM h":                                                        "SELECT",
	} {
		if got := sqlSpanName(stmt); got != want {
			t.Errorf("sqlSpanName(%.30q) = %q, want %q", stmt, got, want)
		}
	}
}

// TestMakeRunRefusesBusyPort: make run checks its ports before it starts
// anything, and stops with one line naming the port and the variable that
// moves it.
func TestMakeRunRefusesBusyPort(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, port, _ := net.SplitHostPort(busy.Addr().String())
	for name, env := range map[string][]string{
		"BIND":            {"BIND=" + busy.Addr().String(), "AUTH_DISABLED=true"},
		"DEV_ISSUER_ADDR": {"BIND=127.0.0.1:1", "DEV_ISSUER_ADDR=" + busy.Addr().String()},
	} {
		run := exec.Command(filepath.Join(proctest.RepoRoot(t), "scripts", "run.sh"))
		// DATABASE_URL on purpose: the check must come before any database.
		run.Env = append(os.Environ(), append(env, "DATABASE_URL=postgres://u@127.0.0.1:1/db", "BIN="+t.TempDir())...)
		out, err := run.CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if err == nil || len(lines) != 1 || !strings.Contains(lines[0], "port "+port+" is in use") || !strings.Contains(lines[0], name+"=") {
			t.Errorf("%s busy: %v, output %q; want one line naming port %s and %s", name, err, out, port, name)
		}
	}
}
