// Package dbtest gives each test its own PostgreSQL database, cloned from a
// migrated template (pgtestdb), so tests run in parallel without seeing each
// other's rows. The server comes from TEST_DATABASE_URL, which `make test`
// sets to a throwaway cluster.
package dbtest

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver pgtestdb uses
	"github.com/peterldowns/pgtestdb"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/acme/usersd/migrations"
	"github.com/acme/usersd/store"
)

// BaseURL returns TEST_DATABASE_URL, failing the test when it is unset or
// the server does not answer. Tests never skip for want of a database.
func BaseURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("TEST_DATABASE_URL")
	if u == "" {
		t.Fatal("TEST_DATABASE_URL is not set: run the tests with `make test`, which starts a throwaway PostgreSQL, or point TEST_DATABASE_URL at a server where this user may create databases")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, u)
	if err != nil {
		t.Fatalf("cannot reach TEST_DATABASE_URL (%v): run the tests with `make test` or fix TEST_DATABASE_URL", err)
	}
	_ = conn.Close(ctx)
	return u
}

// URL returns the connection string of a fresh, migrated database that is
// dropped when the test ends (kept if it fails, for inspection).
func URL(t testing.TB) string {
	t.Helper()
	cfg, err := pgconn.ParseConfig(BaseURL(t))
	if err != nil {
		t.Fatalf("parse TEST_DATABASE_URL: %v", err)
	}
	// Host and port go in the options, so that unix socket paths survive
	// pgtestdb's URL building.
	opts := url.Values{"host": {cfg.Host}, "port": {strconv.Itoa(int(cfg.Port))}, "sslmode": {"disable"}}
	tc := pgtestdb.Config{
		DriverName: "pgx",
		User:       cfg.User,
		Password:   cfg.Password,
		Database:   cfg.Database,
		Options:    opts.Encode(),
	}
	return pgtestdb.Custom(t, tc, migrator{}).URL()
}

// New returns a pool on a fresh, migrated database, closed when the test ends.
func New(t testing.TB, cfg store.Config) *store.DB {
	t.Helper()
	cfg.URL = URL(t)
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

// migrator applies the real migrations (app and River) to the template.
type migrator struct{}

func (migrator) Hash() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		fmt.Fprintf(h, "%s\x00%s\x00", path, b)
		return err
	})
	if err != nil {
		return "", err
	}
	rm, err := rivermigrate.New(riverpgxv5.New(nil), nil)
	if err != nil {
		return "", err
	}
	for _, v := range rm.AllVersions() {
		fmt.Fprintf(h, "river\x00%d\x00%s\x00", v.Version, v.SQLUp)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (migrator) Migrate(ctx context.Context, _ *sql.DB, cfg pgtestdb.Config) error {
	pool, err := pgxpool.New(ctx, cfg.URL())
	if err != nil {
		return err
	}
	defer pool.Close()
	return migrations.Apply(ctx, pool, slog.New(slog.DiscardHandler))
}

// LockUsers takes ACCESS EXCLUSIVE on the users table in a transaction on
// conn, so every query on users blocks until the returned transaction ends
// (rolled back at the latest when the test ends). Tests use it to hold
// requests in flight.
func LockUsers(t testing.TB, conn *pgx.Conn) pgx.Tx {
	t.Helper()
	tx, err := conn.Begin(t.Context())
	if err != nil {
		t.Fatalf("lock users: %v", err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(t.Context(), "LOCK TABLE users IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatalf("lock users: %v", err)
	}
	return tx
}
