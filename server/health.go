package server

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	"github.com/acme/usersd/gen/users/v1/usersv1connect"
)

// pingTimeout bounds one readiness check of the database.
const pingTimeout = 2 * time.Second

// Health is readiness, shared by gRPC health and GET /healthz: serving
// while PostgreSQL answers a ping and shutdown has not begun.
type Health struct {
	ping     func(context.Context) error
	stopping atomic.Bool
}

// NewHealth returns a readiness check that calls ping.
func NewHealth(ping func(context.Context) error) *Health { return &Health{ping: ping} }

// SetShuttingDown makes readiness report not serving from now on.
func (h *Health) SetShuttingDown() { h.stopping.Store(true) }

// Ready reports whether the service should receive traffic.
func (h *Health) Ready(ctx context.Context) bool {
	if h.stopping.Load() {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	return h.ping(ctx) == nil
}

// Check implements grpchealth.Checker for the whole server ("") and for
// UserService.
func (h *Health) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	switch req.Service {
	case "", usersv1connect.UserServiceName:
	default:
		return nil, connect.NewError(connect.CodeNotFound, nil)
	}
	if h.Ready(ctx) {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
}

// serveHTTP answers GET /healthz.
func (h *Health) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if h.Ready(r.Context()) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
}

// serveLivez answers GET /livez: the process serves, no database call.
func serveLivez(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}
