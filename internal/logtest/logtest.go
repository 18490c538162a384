// Package logtest sends slog output to the test log, so it shows up only for
// failing tests (or with -v).
package logtest

import (
	"io"
	"log/slog"
	"testing"
)

// New returns a JSON logger that writes through t.Log.
func New(t testing.TB) *slog.Logger {
	return slog.New(slog.NewJSONHandler(writer{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type writer struct{ t testing.TB }

func (w writer) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// Writer writes each line it is given through t.Log.
func Writer(t testing.TB) io.Writer { return writer{t} }
