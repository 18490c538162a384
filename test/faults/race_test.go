//go:build faults

package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	usersv1 "github.com/acme/usersd/gen/users/v1"
	"github.com/acme/usersd/internal/dbtest"
)

// TestConcurrentSameEmail: 50 concurrent creates of one email, each in a
// different letter case and over every entry point, give exactly one
// success and 49 already_exists / 409, never an internal error; the winner
// has exactly one welcome job.
func TestConcurrentSameEmail(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.URL(t)
	u := startUsersd(t, dbURL, map[string]string{"DB_MAX_CONNS": "20", "RIVER_WORKERS": "2"})
	apis := allAPIs(t, u.URL)
	conn := dbtest.Connect(t, dbURL)

	const n = 50
	for round := range 3 {
		email := fmt.Sprintf("race.condition.%s@example.com", uuid.NewString()[:8])
		variants := caseVariants(email, n, uint64(round))
		results := make([]result, n)
		gate := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			a := apis[i%len(apis)]
			wg.Go(func() {
				<-gate
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				results[i] = a.create(ctx, &usersv1.CreateUserRequest{Email: variants[i], FullName: "Racer"})
				if !results[i].ok() {
					results[i].err = fmt.Errorf("%s: %w", a.name, results[i].err)
				}
			})
		}
		close(gate)
		wg.Wait()

		var ok, exists int
		var winner string
		for i, r := range results {
			switch {
			case r.ok():
				ok++
				winner = r.user.Id
			case r.code == connect.CodeAlreadyExists && r.wire:
				exists++
			default:
				t.Errorf("round %d: create %q: %v, want success or already_exists", round, variants[i], r)
			}
		}
		if ok != 1 || exists != n-1 {
			t.Errorf("round %d: %d successes and %d already_exists, want 1 and %d", round, ok, exists, n-1)
		}
		var rows, jobs int
		if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM users WHERE lower(email) = lower($1)", email).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM river_job WHERE kind = 'welcome_email' AND args->>'user_id' = $1`, winner).Scan(&jobs); err != nil {
			t.Fatal(err)
		}
		if rows != 1 || jobs != 1 {
			t.Errorf("round %d: %d users and %d welcome jobs for the email, want 1 and 1", round, rows, jobs)
		}
	}
}

// caseVariants returns n spellings of email that differ in letter case.
func caseVariants(email string, n int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, 7))
	seen := map[string]bool{}
	var out []string
	for len(out) < n {
		var b strings.Builder
		for _, r := range email {
			if rng.IntN(2) == 0 {
				b.WriteString(strings.ToUpper(string(r)))
			} else {
				b.WriteRune(r)
			}
		}
		if s := b.String(); !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
