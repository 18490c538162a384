package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Database is a database of the test's own on TEST_DATABASE_URL's server.
type Database struct {
	Name   string
	URL    string         // TEST_DATABASE_URL with the database replaced, in the same form
	Config *pgconn.Config // URL parsed: host (a unix socket directory or a TCP host), port, user, password
}

// Empty creates an empty database named prefix_ and 8 random hex digits,
// for a test of what usersd does to a database it has never seen (its
// migrations, replicas migrating one database together). URL gives a
// migrated one instead. It is dropped when the test ends (kept if it
// fails, for inspection).
func Empty(t testing.TB, prefix string) Database {
	t.Helper()
	base := BaseURL(t)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	d := Database{Name: prefix + "_" + hex.EncodeToString(rnd[:])}
	d.URL = withDatabase(t, base, d.Name)
	cfg, err := pgconn.ParseConfig(d.URL)
	if err != nil {
		t.Fatalf("parse TEST_DATABASE_URL: %v", err)
	}
	d.Config = cfg
	ident := pgx.Identifier{d.Name}.Sanitize()
	if err := execOn(base, "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("create database %s: %v", d.Name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("database %s kept for inspection", d.Name)
			return
		}
		if err := execOn(base, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", d.Name, err)
		}
	})
	return d
}

// execOn runs one statement on a connection of its own to dbURL.
func execOn(dbURL, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase is the connection string s (a URL or keyword/value pairs)
// with the database name replaced.
func withDatabase(t testing.TB, s, name string) string {
	t.Helper()
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("parse TEST_DATABASE_URL: %v", err)
		}
		u.Path, u.RawPath = "/"+name, ""
		q := u.Query()
		q.Del("dbname")
		u.RawQuery = q.Encode()
		return u.String()
	}
	return s + " dbname=" + name // keyword/value form: the last one wins
}

// Connect opens a connection to dbURL for the test's own queries, closed
// when the test ends.
func Connect(t testing.TB, dbURL string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect to %s: %v", dbURL, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(ctx)
	})
	return conn
}

// WaitLockWaiters waits up to d until n sessions on dbURL's database wait
// for a lock: the requests a test holds with LockUsers have reached
// PostgreSQL. It asks on a connection of its own, as the lock's holder is
// inside its transaction.
func WaitLockWaiters(t testing.TB, dbURL string, n int, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect to %s: %v", dbURL, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	deadline := time.Now().Add(d)
	for {
		var waiting int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions wait for a lock after %s, want %d", waiting, d, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
