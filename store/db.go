// Package store holds the PostgreSQL pool and the queries on users. It knows
// nothing about HTTP, Connect or River's workers; callers get domain errors
// (users.ErrNotFound, users.ErrEmailTaken, users.ErrStale, users.ErrUnavailable, ...) or context errors.
package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/acme/usersd/users"
)

// Config sizes the pool.
type Config struct {
	URL            string
	MaxConns       int32
	MinConns       int32
	AcquireTimeout time.Duration   // bound on waiting for a pooled connection
	Tracer         pgx.QueryTracer // optional: traces every statement (otelpgx)
}

// DB is the connection pool with a bounded wait for connections.
type DB struct {
	Pool           *pgxpool.Pool
	acquireTimeout time.Duration
}

// ParseConfig checks a connection string without connecting.
func ParseConfig(url string) (*pgxpool.Config, error) {
	return pgxpool.ParseConfig(url)
}

// Open builds the pool. It does not wait for PostgreSQL: connections are made
// on demand, so a replica can start while the database is still coming up.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	if cfg.MinConns >= 0 && cfg.MinConns <= pc.MaxConns {
		pc.MinConns = cfg.MinConns
	}
	pc.ConnConfig.Tracer = cfg.Tracer
	// With default_query_exec_mode=exec or simple_protocol (PgBouncer's
	// transaction pooling) pgx picks a parameter's type from its Go type
	// instead of asking the server, so our uuid types must be registered.
	pc.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		registerTypes(c.TypeMap())
		return nil
	}
	// A cancelled request cancels its query on the server too, instead of
	// leaving it running behind a closed socket.
	pc.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: time.Second}
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	timeout := cfg.AcquireTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &DB{Pool: pool, acquireTimeout: timeout}, nil
}

// Close waits for connections in use to be released, then closes them all.
func (db *DB) Close() { db.Pool.Close() }

// Acquire takes a connection from the pool, waiting at most the acquire
// timeout (pgxpool alone would wait as long as ctx allows). A wait that
// times out, or a database that cannot be reached, is users.ErrUnavailable.
func (db *DB) Acquire(ctx context.Context) (*pgxpool.Conn, error) {
	actx := ctx
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > db.acquireTimeout {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, db.acquireTimeout)
		defer cancel()
	}
	conn, err := db.Pool.Acquire(actx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// %v: the pool's error is often the acquire timeout's
		// DeadlineExceeded, which must not read as the request's deadline.
		return nil, fmt.Errorf("%w: acquire connection: %v", users.ErrUnavailable, err)
	}
	return conn, nil
}

// Ping checks that a connection can be had and PostgreSQL answers.
func (db *DB) Ping(ctx context.Context) error {
	conn, err := db.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	return classify(ctx, conn.Ping(ctx))
}

// InTx runs fn in a transaction on a connection acquired with the bounded
// wait, committing when fn returns nil. Errors are classified.
func (db *DB) InTx(ctx context.Context, fn func(pgx.Tx) error) error {
	conn, err := db.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	return classify(ctx, pgx.BeginFunc(ctx, conn, fn))
}
