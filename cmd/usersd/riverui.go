package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"riverqueue.com/riverui"

	"github.com/acme/usersd/server"
)

// riverUIPrefix is where River UI is mounted when RIVER_UI_PASSWORD is set.
const riverUIPrefix = "/riverui"

// newRiverUI returns River UI behind basic auth, running until ctx ends.
// It shows job arguments (user ids) and errors, hence the password.
func newRiverUI(ctx context.Context, cfg config, client *river.Client[pgx.Tx], log *slog.Logger) (http.Handler, error) {
	h, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints: riverui.NewEndpoints(client, nil),
		Logger:    log,
		Prefix:    riverUIPrefix,
	})
	if err != nil {
		return nil, fmt.Errorf("river ui: %w", err)
	}
	if err := h.Start(ctx); err != nil {
		return nil, fmt.Errorf("river ui: %w", err)
	}
	return server.BasicAuth("River UI", cfg.RiverUIUser, cfg.RiverUIPassword, h), nil
}
