// Package migrations holds the database schema as embedded SQL files and
// applies it, together with River's schema, under one advisory lock.
package migrations

import (
	"context"
	"embed"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// FS holds the app's migrations in tern's format (NNN_name.sql, with
// "---- create above / drop below ----" separating up from down).
//
//go:embed *.sql
var FS embed.FS

// lockKey is the advisory lock that serialises migrations across replicas.
// Arbitrary, but fixed forever: replicas of every version must agree on it.
const lockKey = int64(0x75736572736400) // "usersd"

// versionTable records which of the app's migrations have run.
const versionTable = "public.schema_version"

// Apply brings the schema up to date: first the app's migrations, then
// River's. It holds a session advisory lock for the whole run, so replicas
// starting together apply each migration exactly once while the others wait.
func Apply(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: acquire connection: %w", err)
	}
	defer conn.Release()

	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		return fmt.Errorf("migrate: take advisory lock: %w", err)
	}
	defer func() {
		// A failed unlock is released with the session anyway: drop the
		// connection rather than return it to the pool still locked.
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockKey); err != nil {
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()

	m, err := migrate.NewMigrator(ctx, conn.Conn(), versionTable)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := m.LoadMigrations(FS); err != nil {
		return fmt.Errorf("migrate: load: %w", err)
	}
	m.OnStart = func(seq int32, name, _, _ string) {
		log.InfoContext(ctx, "applying migration", "version", seq, "name", name)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}

	// River's tables. Each of its migrations runs in its own transaction
	// (some add enum values, which cannot be used in the transaction that
	// adds them); the advisory lock above still keeps other replicas out.
	rm, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: slog.New(slog.DiscardHandler)}) // logged below, with names
	if err != nil {
		return fmt.Errorf("migrate river: %w", err)
	}
	res, err := rm.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return fmt.Errorf("migrate river: %w", err)
	}
	for _, v := range res.Versions {
		log.InfoContext(ctx, "applied river migration", "version", v.Version, "name", v.Name)
	}
	return nil
}
