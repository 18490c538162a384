// Package store holds the PostgreSQL pool and the queries on users. It knows
// nothing about HTTP, Connect or River's workers; callers get domain errors
// (users.ErrNotFound, users.ErrEmailTaken, users.ErrStale, users.ErrUnavailable, ...) or context errors.
package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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

// walPosition is the primary's WAL insert position, as a number: at or
// after the commit record of every transaction that has committed. (The
// write position, pg_current_wal_lsn, can lag it with asynchronous
// commit.) A replica that has replayed this far has those commits. On an
// idle primary it may stand just past a page header, which replicas reach
// only with the next record: a token read then goes to the primary, never
// to a replica without the write.
const walPosition = `(pg_current_wal_insert_lsn() - '0/0')::bigint`

// inTxAt is InTx that also returns the WAL position of the commit, read in
// the same round trip as the COMMIT: the simple protocol runs "COMMIT;
// SELECT ..." as two transactions, the second after the first has ended.
func (db *DB) inTxAt(ctx context.Context, fn func(pgx.Tx) error) (uint64, error) {
	conn, err := db.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, classify(ctx, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return 0, classify(ctx, err)
	}
	results, err := conn.Conn().PgConn().Exec(ctx, "COMMIT; SELECT "+walPosition).ReadAll()
	if err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx)) // a no-op unless the COMMIT never ran
		return 0, classify(ctx, err)
	}
	return parsePosition(results)
}

// parsePosition reads the walPosition of the last result.
func parsePosition(results []*pgconn.Result) (uint64, error) {
	if len(results) == 0 || len(results[len(results)-1].Rows) != 1 {
		return 0, errors.New("no WAL position after the commit")
	}
	n, err := strconv.ParseUint(string(results[len(results)-1].Rows[0][0]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("WAL position: %w", err)
	}
	return n, nil
}
