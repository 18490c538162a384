package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"

	"github.com/acme/usersd/server"
)

// listeners are usersd's ports, bound before anything else starts.
type listeners struct {
	api     net.Listener
	pprof   net.Listener // nil without PPROF_BIND
	metrics net.Listener // nil without METRICS_BIND
}

// listen binds BIND, PPROF_BIND and METRICS_BIND. An address that cannot
// be bound is an error naming its variable; the ports bound before it are
// closed again.
func listen(cfg config) (*listeners, error) {
	l := &listeners{}
	for _, b := range []struct {
		name, addr string
		ln         *net.Listener
	}{
		{"BIND", cfg.Bind, &l.api},
		{"PPROF_BIND", cfg.PprofBind, &l.pprof},
		{"METRICS_BIND", cfg.MetricsBind, &l.metrics},
	} {
		if b.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", b.addr)
		if err != nil {
			l.close()
			return nil, fmt.Errorf("%s %s: %w (set %s to another host:port)", b.name, b.addr, unwrapOp(err), b.name)
		}
		*b.ln = ln
	}
	return l, nil
}

// unwrapOp drops net.OpError's "listen tcp 1.2.3.4:5:" prefix, which the
// message already says.
func unwrapOp(err error) error {
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Err != nil {
		return op.Err
	}
	return err
}

// close closes every listener; a served one is closed by its server
// first, and closing it again is harmless.
func (l *listeners) close() {
	for _, ln := range []net.Listener{l.api, l.pprof, l.metrics} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// sideServer is an HTTP server on a port of its own beside the API: it
// serves until the API server stops, and stops with it.
type sideServer struct {
	name string
	srv  *http.Server
	ln   net.Listener
}

func (s sideServer) serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return nil
}

// sideServers are the pprof server (only with PPROF_BIND: profiles reveal
// internals and cost CPU) and the metrics server (with METRICS_BIND;
// without it /metrics is served on the API port).
func sideServers(l *listeners, tel *telemetry, log *slog.Logger) []sideServer {
	var side []sideServer
	if l.pprof != nil {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		side = append(side, newSideServer("pprof", l.pprof, mux, log))
	}
	if l.metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", tel.metrics)
		side = append(side, newSideServer("metrics", l.metrics, mux, log))
	}
	return side
}

func newSideServer(name string, ln net.Listener, h http.Handler, log *slog.Logger) sideServer {
	log.Info(name+" listening", "addr", "http://"+ln.Addr().String())
	return sideServer{name: name, ln: ln, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: server.ReadHeaderTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
}
