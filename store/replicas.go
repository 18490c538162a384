package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/acme/usersd/users"
)

// Replicas routes reads between the primary and its streaming replicas
// (hot standbys): the one place that decides which pool serves a read.
//
// A read with a consistency token goes to a replica that has replayed at
// least the token's position, else to the primary: a client that sends the
// token of its own last write reads that write. A read without one goes to
// any replica no more than maxLag behind, else to the primary. "Behind"
// is measured against what the primary has written: an idle replica that
// has replayed everything is not behind, however long ago its last replayed
// commit was.
//
// Positions are checked in the background (every checkEvery), not per
// read: a replica's cached replay position is a lower bound of its real
// one (replay only moves forward), so a read routed by it never sees older
// data than the token names. A replica that cannot be reached, or fails a
// read, gets no reads until a check succeeds again; the read that found out
// is retried on the primary.
type Replicas struct {
	primary  *DB
	replicas []*replica
	maxLag   time.Duration
	log      *slog.Logger

	mu      sync.Mutex // guards history
	history []sample   // the primary's WAL position over the last checks, oldest first

	primaryReads atomic.Int64
	next         atomic.Uint32 // round robin over the usable replicas
	stop         context.CancelFunc
	done         chan struct{}
}

// Checking replicas.
const (
	checkEvery   = 100 * time.Millisecond
	checkTimeout = time.Second
	historyLen   = 100 // 10 s of positions at checkEvery
)

type sample struct {
	at  time.Time
	pos uint64
}

// replica is one streaming replica and what the last check found.
type replica struct {
	Name  string // host:port, for metrics and logs
	db    *DB
	state atomic.Pointer[replicaState]
	reads atomic.Int64
}

type replicaState struct {
	usable    bool   // reachable, in recovery, and checked recently
	replayed  uint64 // WAL position replayed, as of checkedAt
	lag       time.Duration
	checkedAt time.Time
	replayTS  time.Time // pg_last_xact_replay_timestamp, for metrics
}

// ReplicaStats is what metrics show of one replica.
type ReplicaStats struct {
	Name   string
	Usable bool
	Lag    time.Duration // how far behind the primary's writes; 0 when caught up
	Reads  int64         // reads it has served
}

// OpenReplicas opens a pool per replica URL (connections are made on
// demand, so a replica that is down does not stop start-up) and starts
// checking them. cfg sizes each pool, as for the primary.
func OpenReplicas(ctx context.Context, primary *DB, urls []string, maxLag time.Duration, cfg Config, log *slog.Logger) (*Replicas, error) {
	r := &Replicas{primary: primary, maxLag: maxLag, log: log, done: make(chan struct{})}
	for _, u := range urls {
		cfg.URL = u
		db, err := Open(ctx, cfg)
		if err != nil {
			r.closePools()
			return nil, fmt.Errorf("replica: %w", err)
		}
		cc := db.Pool.Config().ConnConfig
		rp := &replica{Name: net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))), db: db}
		rp.state.Store(&replicaState{})
		r.replicas = append(r.replicas, rp)
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.stop = cancel
	go r.run(cctx)
	return r, nil
}

// Close stops the checks and closes the replicas' pools.
func (r *Replicas) Close() {
	if r == nil {
		return
	}
	r.stop()
	<-r.done
	r.closePools()
}

func (r *Replicas) closePools() {
	for _, rp := range r.replicas {
		rp.db.Close()
	}
}

// pick returns the pool a read should use, and the replica behind it (nil
// for the primary).
func (r *Replicas) pick(ctx context.Context) (*DB, *replica) {
	if r == nil || len(r.replicas) == 0 {
		return r.primaryDB(), nil
	}
	need := users.ReadAfterOf(ctx).Pos()
	n := uint32(len(r.replicas))
	start := r.next.Add(1)
	for i := range n {
		rp := r.replicas[(start+i)%n]
		st := rp.state.Load()
		switch {
		case !st.usable:
		case need > 0 && st.replayed >= need:
			return rp.db, rp
		case need == 0 && st.lag <= r.maxLag:
			return rp.db, rp
		}
	}
	return r.primaryDB(), nil
}

func (r *Replicas) primaryDB() *DB { return r.primary }

// count records which target served a read.
func (r *Replicas) count(rp *replica) {
	if rp == nil {
		r.primaryReads.Add(1)
	} else {
		rp.reads.Add(1)
	}
}

// failed takes a replica out of rotation until its next good check.
func (r *Replicas) failed(rp *replica, err error) {
	st := *rp.state.Load()
	if st.usable {
		r.log.Warn("replica failed a read; reads go elsewhere until it checks out again", "replica", rp.Name, "err", err)
	}
	st.usable = false
	rp.state.Store(&st)
}

// PrimaryReads is how many reads the primary served.
func (r *Replicas) PrimaryReads() int64 { return r.primaryReads.Load() }

// Stats describes every replica.
func (r *Replicas) Stats() []ReplicaStats {
	var out []ReplicaStats
	for _, rp := range r.replicas {
		st := rp.state.Load()
		out = append(out, ReplicaStats{Name: rp.Name, Usable: st.usable, Lag: st.lag, Reads: rp.reads.Load()})
	}
	return out
}

// run checks the primary and every replica every checkEvery until ctx
// ends.
func (r *Replicas) run(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(checkEvery)
	defer t.Stop()
	for {
		r.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check reads the primary's position, then each replica's, at the same
// moment (in parallel), and updates what reads are routed by.
func (r *Replicas) check(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	// The write position, not walPosition: on an idle primary the insert
	// position can stand past a page header that no record follows, which
	// a replica that has replayed everything never reaches.
	var pos uint64
	if err := r.primary.Pool.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - '0/0')::bigint`).Scan(&pos); err != nil {
		return // without the primary's position no lag can be judged: keep the last verdicts
	}
	now := time.Now()
	r.mu.Lock()
	r.history = append(r.history, sample{now, pos})
	if len(r.history) > historyLen {
		r.history = r.history[len(r.history)-historyLen:]
	}
	history := r.history
	r.mu.Unlock()

	var wg sync.WaitGroup
	for _, rp := range r.replicas {
		wg.Go(func() { r.checkReplica(ctx, rp, history, now) })
	}
	wg.Wait()
}

func (r *Replicas) checkReplica(ctx context.Context, rp *replica, history []sample, now time.Time) {
	var replayed pgtype.Int8
	var replayTS pgtype.Timestamptz
	err := rp.db.Pool.QueryRow(ctx, `
		SELECT (pg_last_wal_replay_lsn() - '0/0')::bigint, pg_last_xact_replay_timestamp()
		 WHERE pg_is_in_recovery()`).Scan(&replayed, &replayTS)
	prev := rp.state.Load()
	st := &replicaState{checkedAt: now, replayTS: replayTS.Time}
	switch {
	case err != nil:
		// Unreachable, or no longer a replica (promoted: no rows): no
		// reads. pgx reconnects on the next check, so one that comes back
		// (or is replaced) is used again once it checks out.
		if prev.usable {
			r.log.Warn("replica unusable; reads go elsewhere", "replica", rp.Name, "err", err)
		}
	case !replayed.Valid:
	default:
		st.usable = true
		st.replayed = uint64(replayed.Int64)
		st.lag = lagOf(st.replayed, history, now)
		if !prev.usable {
			r.log.Info("replica usable", "replica", rp.Name, "lag", st.lag)
		}
	}
	rp.state.Store(st)
}

// lagOf is how far behind a replica that has replayed up to replayed is:
// the time since the primary last stood at or below that position (so it
// has not replayed anything written since). Caught up, it is 0; behind
// everything the history remembers, it is at least the history's span.
func lagOf(replayed uint64, history []sample, now time.Time) time.Duration {
	if len(history) == 0 || replayed >= history[len(history)-1].pos {
		return 0
	}
	for i := len(history) - 1; i >= 0; i-- {
		if history[i].pos <= replayed {
			return now.Sub(history[i].at)
		}
	}
	return now.Sub(history[0].at) + checkEvery
}

// querier is what a read needs of a connection.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// read runs fn on a connection of the pool that should serve ctx's read
// (Replicas.pick). When a replica fails it (unreachable, or a query
// cancelled by a conflict with replay) the replica leaves the rotation and
// fn runs again on the primary, so the request does not fail.
func (s *Users) read(ctx context.Context, fn func(querier) error) error {
	if s.replicas == nil {
		return s.readOn(ctx, s.db, fn)
	}
	db, rp := s.replicas.pick(ctx)
	err := s.readOn(ctx, db, fn)
	if rp != nil && err != nil && ctx.Err() == nil && replicaFault(err) {
		s.replicas.failed(rp, err)
		db, rp = s.db, nil
		err = s.readOn(ctx, db, fn)
	}
	s.replicas.count(rp)
	return err
}

func (s *Users) readOn(ctx context.Context, db *DB, fn func(querier) error) error {
	conn, err := db.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	return fn(conn)
}

// replicaFault reports errors that say nothing about the data: the
// replica could not be reached, or cancelled the query to replay (SQLSTATE
// 40001, "conflict with recovery").
func replicaFault(err error) bool {
	if errors.Is(err, users.ErrUnavailable) {
		return true
	}
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	return ok && (pgErr.Code == "40001" || pgErr.Code[:2] == "57")
}
