//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/acme/usersd/gen/users/v1/usersv1connect"
	"github.com/acme/usersd/internal/dbtest"
)

// blockedQueries counts usersd's backends that wait on a lock or run a
// query on users (the test's own sessions excluded).
const blockedQueries = `SELECT count(*) FROM pg_stat_activity
	WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> $1
	  AND (wait_event_type = 'Lock' OR (state <> 'idle' AND query ~* '\musers\M'))`

// TestClientDeadline: calls with a 1 ms (and a 300 ms) deadline get
// deadline_exceeded on every entry point, also when the server, not the
// client, enforces the deadline, and leave no query running in PostgreSQL.
// The users table is locked meanwhile, so every query that reaches
// PostgreSQL blocks until the deadline cancels it.
func TestClientDeadline(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.URL(t)
	u := startUsersd(t, dbURL, map[string]string{"DB_MAX_CONNS": "12", "REQUEST_TIMEOUT": "2s",
		// No workers: the welcome worker reads users and would block on the lock too.
		"RIVER_WORKERS": "0"})
	apis := allAPIs(t, u.URL)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	r := apis[0].create(ctx, newUser("deadline-seed"))
	cancel()
	if !r.ok() {
		t.Fatalf("seed user: %v", r)
	}
	existing := r.user.Id

	locker := dbtest.Connect(t, dbURL)
	monitor := dbtest.Connect(t, dbURL)
	var lockerPID uint32
	if err := locker.QueryRow(t.Context(), "SELECT pg_backend_pid()").Scan(&lockerPID); err != nil {
		t.Fatal(err)
	}
	tx := dbtest.LockUsers(t, locker)

	// Watch PostgreSQL: the 300 ms calls must really reach it and block.
	var maxBlocked atomic.Int64
	stopWatch := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		for i := 0; i < 2000; i++ {
			select {
			case <-stopWatch:
				return
			case <-time.After(20 * time.Millisecond):
			}
			var n int64
			if err := monitor.QueryRow(context.Background(), blockedQueries, lockerPID).Scan(&n); err == nil && n > maxBlocked.Load() {
				maxBlocked.Store(n)
			}
		}
	})

	var emails sync.Map // emails of creates that timed out
	var wg sync.WaitGroup
	for _, a := range apis {
		for _, d := range []time.Duration{time.Millisecond, 300 * time.Millisecond} {
			wg.Go(func() {
				for _, op := range []string{"create", "get", "list"} {
					ctx, cancel := context.WithTimeout(context.Background(), d)
					start := time.Now()
					var r result
					switch op {
					case "create":
						req := newUser("deadline")
						emails.Store(req.Email, a.name)
						r = a.create(ctx, req)
					case "get":
						r = a.get(ctx, existing)
					case "list":
						r = a.list(ctx, 10)
					}
					cancel()
					if r.code != connect.CodeDeadlineExceeded {
						t.Errorf("%s %s with a %s deadline: %v, want deadline_exceeded", a.name, op, d, r)
					}
					if took := time.Since(start); took > d+1500*time.Millisecond {
						t.Errorf("%s %s with a %s deadline took %s", a.name, op, d, took)
					}
				}
			})
		}
	}

	// The server enforces deadlines by itself: Connect-Timeout-Ms and
	// grpc-timeout headers with no client-side deadline, and REQUEST_TIMEOUT
	// (2s here) on a REST call with none at all.
	hc := h2cClient(t)
	for _, ms := range []int{1, 300} {
		wg.Go(func() {
			email := fmt.Sprintf("deadline-header-%d-%s@example.com", ms, uuid.NewString())
			emails.Store(email, "connect header")
			status, code := rawConnect(t, hc, u.URL, usersv1connect.UserServiceCreateUserProcedure,
				fmt.Sprintf(`{"email":%q,"fullName":"Header Deadline"}`, email), map[string]string{"Connect-Timeout-Ms": fmt.Sprint(ms)})
			if status != http.StatusGatewayTimeout || code != "deadline_exceeded" {
				t.Errorf("Connect-Timeout-Ms: %d: status %d code %q, want 504 deadline_exceeded", ms, status, code)
			}
		})
	}
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		rest := restAPIs(t, u.URL)[0]
		req := newUser("deadline-rest-server")
		emails.Store(req.Email, "rest server timeout")
		r := rest.create(ctx, req)
		if r.code != connect.CodeDeadlineExceeded || r.status != http.StatusGatewayTimeout {
			t.Errorf("REST create past REQUEST_TIMEOUT: %v, want 504 timeout", r)
		}
		if took := time.Since(start); took > 4*time.Second {
			t.Errorf("REST create past a 2s REQUEST_TIMEOUT took %s", took)
		}
	})
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c := usersv1connect.NewUserServiceClient(hc, u.URL, connect.WithGRPC())
		req := newUser("deadline-grpc-server")
		emails.Store(req.Email, "grpc server timeout")
		_, err := c.CreateUser(ctx, connect.NewRequest(req))
		if r := connectResult(err); r.code != connect.CodeDeadlineExceeded || !r.wire {
			t.Errorf("gRPC create past REQUEST_TIMEOUT: %v, want deadline_exceeded from the server", r)
		}
	})
	wg.Wait()
	close(stopWatch)
	watch.Wait()
	if maxBlocked.Load() == 0 {
		t.Errorf("no query ever reached PostgreSQL and blocked on the lock: the test did not exercise query cancellation")
	}

	// With the lock still held, a query that was not cancelled would still
	// be there, waiting.
	var left int64
	deadline := time.Now().Add(3 * time.Second)
	for {
		if err := monitor.QueryRow(t.Context(), blockedQueries, lockerPID).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if left != 0 {
		rows, _ := monitor.Query(t.Context(), `SELECT pid, state, coalesce(wait_event_type, ''), query FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> $1`, lockerPID)
		for rows.Next() {
			var pid int32
			var state, wait, query string
			_ = rows.Scan(&pid, &state, &wait, &query)
			t.Logf("backend %d: %s, waiting on %q: %s", pid, state, wait, query)
		}
		rows.Close()
		t.Errorf("%d queries still running or waiting in PostgreSQL 3s after their deadlines passed", left)
	}

	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	// No timed-out create may commit once the lock is gone.
	time.Sleep(500 * time.Millisecond)
	var all []string
	emails.Range(func(k, _ any) bool { all = append(all, k.(string)); return true })
	var ghosts []string
	err := pgx.BeginFunc(t.Context(), monitor, func(tx pgx.Tx) error {
		rows, err := tx.Query(t.Context(), "SELECT email FROM users WHERE email = ANY($1)", all)
		if err != nil {
			return err
		}
		ghosts, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ghosts) > 0 {
		t.Errorf("creates that reported deadline_exceeded committed anyway: %v", ghosts)
	}

	// And the service is fine afterwards.
	for _, a := range apis {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		r := a.create(ctx, newUser("after-deadline"))
		cancel()
		if !r.ok() {
			t.Errorf("%s: create after the deadline storm: %v", a.name, r)
		}
	}
}

// rawConnect sends one Connect unary JSON call with extra headers and no
// client-side deadline, and returns the HTTP status and the error code.
func rawConnect(t *testing.T, hc *http.Client, base, procedure, body string, hdr map[string]string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+procedure, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connect-Protocol-Version", "1")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Errorf("%s: %v", procedure, err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e.Code
}
