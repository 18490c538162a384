//go:build !nodb

package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/internal/logtest"
	"github.com/acme/usersd/migrations"
	"github.com/acme/usersd/store"
	"github.com/acme/usersd/users"
)

// replicaDelay is how far behind the test replica replays commits.
const replicaDelay = 300 * time.Millisecond

type pair struct {
	primary, replica *dbtest.Cluster
	st               *store.Users
	replicas         *store.Replicas
	direct           *store.DB // the replica's database, read directly
}

// newPair starts a primary with a streaming replica replaying 300 ms
// behind, and a store that routes reads with REPLICA_MAX_LAG maxLag.
func newPair(t *testing.T, maxLag time.Duration) *pair {
	t.Helper()
	ctx := t.Context()
	p := &pair{primary: dbtest.NewCluster(t)}
	db, err := store.Open(ctx, store.Config{URL: p.primary.URL("usersd"), MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := migrations.Apply(ctx, db.Pool, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	p.replica = p.primary.NewReplica(t, replicaDelay)
	p.replicas, err = store.OpenReplicas(ctx, db, []string{p.replica.URL("usersd")}, maxLag, store.Config{MaxConns: 4, AcquireTimeout: time.Second}, logtest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.replicas.Close)
	p.direct, err = store.Open(ctx, store.Config{URL: p.replica.URL("usersd"), MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.direct.Close)
	p.st = store.NewUsers(db, store.Hooks{}, store.WithReplicas(p.replicas))
	p.waitUsable(t, true)
	return p
}

// waitUsable waits until the replica is (or is not) in rotation.
func (p *pair) waitUsable(t *testing.T, usable bool) store.ReplicaStats {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st := p.replicas.Stats()[0]
		if st.Usable == usable {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica usable = %v after 15 s, want %v", st.Usable, usable)
		}
	}
}

// waitReplayed waits until the replica has u, then for two checks.
func (p *pair) waitReplayed(t *testing.T, u users.User) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var n int
		if err := p.direct.Pool.QueryRow(t.Context(), "SELECT count(*) FROM users WHERE id = $1", u.ID).Scan(&n); err == nil && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica has not replayed user %s after 15 s", u.ID)
		}
	}
	time.Sleep(250 * time.Millisecond)
}

// create makes a user and returns it with its write's token.
func (p *pair) create(t *testing.T, email string) (users.User, users.Token) {
	t.Helper()
	ctx, w := users.RecordWrites(t.Context())
	u, err := p.st.Create(ctx, users.NewUser{Email: email, FullName: "Replicated"})
	if err != nil {
		t.Fatal(err)
	}
	if w.Token().Pos() == 0 {
		t.Fatal("the create noted no commit position")
	}
	return u, w.Token()
}

// TestTokenReadsSeeOwnWrites: a read sent with the token of the caller's
// own write sees it, always: from the replica once it has replayed it,
// else from the primary; and some do come from the replica.
func TestTokenReadsSeeOwnWrites(t *testing.T) {
	t.Parallel()
	p := newPair(t, time.Second)
	before := p.replicas.Stats()[0].Reads
	for i := range 300 {
		u, tok := p.create(t, fmt.Sprintf("own%d@example.com", i))
		if i%50 == 0 {
			// Let the replica replay the write (and the router see it), so
			// that it serves some of these reads; the others come right
			// after the write.
			p.waitReplayed(t, u)
		}
		got, err := p.st.Get(users.ReadAfter(t.Context(), tok), u.ID)
		if err != nil || got.ID != u.ID {
			t.Fatalf("read %d with its write's token: %v, %v", i, got, err)
		}
	}
	primary, replica := p.replicas.PrimaryReads(), p.replicas.Stats()[0].Reads-before
	t.Logf("300 write-then-read pairs: %d reads from the primary, %d from the replica", primary, replica)
	if replica == 0 {
		t.Error("no token read was served by the replica")
	}
}

// TestTokenFromTheFuture: a token the replica never reaches in time is
// answered by the primary.
func TestTokenFromTheFuture(t *testing.T) {
	t.Parallel()
	p := newPair(t, time.Second)
	u, tok := p.create(t, "future@example.com")
	time.Sleep(replicaDelay + 500*time.Millisecond)
	reads := p.replicas.PrimaryReads()
	ahead := users.TokenAt(tok.Pos() + 1<<40)
	got, err := p.st.Get(users.ReadAfter(t.Context(), ahead), u.ID)
	if err != nil || got.ID != u.ID || p.replicas.PrimaryReads() != reads+1 {
		t.Errorf("a token from the future: %v, %v, primary reads %d -> %d; want the primary to answer", got, err, reads, p.replicas.PrimaryReads())
	}
}

// TestReadsWithoutTokenAreBoundedStale: without a token a read goes to the
// replica while it is at most REPLICA_MAX_LAG behind; an idle replica that
// has replayed everything is not behind; during a lag spike past
// REPLICA_MAX_LAG reads go to the primary, and come back after it.
func TestReadsWithoutTokenAreBoundedStale(t *testing.T) {
	t.Parallel()
	p := newPair(t, time.Second)
	u, _ := p.create(t, "bounded@example.com")
	time.Sleep(3 * time.Second) // idle: everything replayed, however old the last commit
	if st := p.replicas.Stats()[0]; !st.Usable || st.Lag != 0 {
		t.Fatalf("an idle, caught-up replica: %+v; want usable with lag 0", st)
	}
	before := p.replicas.Stats()[0].Reads
	if _, err := p.st.Get(t.Context(), u.ID); err != nil {
		t.Fatal(err)
	}
	if p.replicas.Stats()[0].Reads != before+1 {
		t.Error("a read without a token did not go to the caught-up replica")
	}

	// A lag spike: the replica holds commits back 3 s, while writes go on.
	conn := dbtest.Connect(t, p.replica.URL("usersd"))
	setDelay := func(d string) {
		t.Helper()
		if _, err := conn.Exec(context.Background(), "ALTER SYSTEM SET recovery_min_apply_delay = '"+d+"'"); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(context.Background(), "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
	}
	setDelay("3s")
	stop := time.Now().Add(10 * time.Second)
	for i := 0; time.Now().Before(stop); i++ {
		p.create(t, fmt.Sprintf("spike%d@example.com", i))
		if p.replicas.Stats()[0].Lag > 1500*time.Millisecond {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := p.replicas.Stats()[0]
	if st.Lag <= time.Second {
		t.Fatalf("the replica's lag did not pass REPLICA_MAX_LAG: %+v", st)
	}
	reads, primary := st.Reads, p.replicas.PrimaryReads()
	if _, err := p.st.Get(t.Context(), u.ID); err != nil {
		t.Fatal(err)
	}
	if p.replicas.Stats()[0].Reads != reads || p.replicas.PrimaryReads() != primary+1 {
		t.Errorf("during the spike (lag %s) a read without a token did not go to the primary", st.Lag)
	}
	setDelay(replicaDelay.String())
	for deadline := time.Now().Add(15 * time.Second); p.replicas.Stats()[0].Lag > time.Second; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the replica did not catch up after the spike: %+v", p.replicas.Stats()[0])
		}
	}
	reads = p.replicas.Stats()[0].Reads
	if _, err := p.st.Get(t.Context(), u.ID); err != nil || p.replicas.Stats()[0].Reads != reads+1 {
		t.Errorf("after the spike reads did not come back to the replica: %v", err)
	}
}

// TestReplicaDown: a replica that stops fails no read; reads go to the
// primary until it is back.
func TestReplicaDown(t *testing.T) {
	t.Parallel()
	p := newPair(t, time.Second)
	u, _ := p.create(t, "down@example.com")
	time.Sleep(time.Second)
	p.replica.Stop("immediate")
	// Reads right away, before any check has noticed: none may fail.
	for i := range 20 {
		if _, err := p.st.Get(t.Context(), u.ID); err != nil {
			t.Fatalf("read %d with the replica down: %v", i, err)
		}
		if _, _, err := p.st.Events(t.Context(), users.Cursor{}, 10); err != nil {
			t.Fatalf("feed read %d with the replica down: %v", i, err)
		}
	}
	p.waitUsable(t, false)
	p.replica.Start()
	p.waitUsable(t, true)
	reads := p.replicas.Stats()[0].Reads
	for deadline := time.Now().Add(10 * time.Second); p.replicas.Stats()[0].Reads == reads; time.Sleep(20 * time.Millisecond) {
		if _, err := p.st.Get(t.Context(), u.ID); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("reads did not come back to the restarted replica")
		}
	}
}
