#!/usr/bin/env bash
# bench/run.sh — `make bench`: usersd on every entry point against bare
# baselines, on a throwaway local PostgreSQL, in one run; prints one table
# and saves it to bench/out/report.txt.
#
# What it does (each measurement BENCH_DURATION seconds, default 5; about
# 19 minutes in all on a 2-core machine):
#   build usersd with release flags (make build), the bare handler
#   (bench/bare) and the load generator (bench/load); ghz once into
#   bench/.bin; init a fresh PostgreSQL (scripts/pgcluster.sh --fast: fsync,
#   synchronous_commit and full_page_writes off; plus shared_buffers 256MB);
#   usersd migrate; seed users with deterministic UUIDv7 ids (bench/sql).
#   Every measured run also records, from /proc over the same window
#   (bench/cpu): the share of the machine's CPUs that processes other than
#   the bench's used ("others": not this script's process tree, which holds
#   usersd, the bare handler, wrk, ghz, bench/load, pgbench and psql, nor
#   the PostgreSQL servers' postmaster trees, nor kernel threads), which the
#   report prints beside each row and marks NOISY above 10%; and each
#   PostgreSQL server's CPU time (the postmaster and every backend and
#   helper under it), which the report turns into PostgreSQL's CPU per
#   request on the GetUser and CreateUser rows of usersd, the bare handler
#   and pgbench alike. Each phase starts by noting the load average and
#   the others' share over one second in which the bench does nothing.
#   1. 10,000 users: GetUser p50 at BENCH_SCALE_RATE (the scale reference).
#   2. 100,000 users: peak RPS of GetUser per entry point (sweep over
#      BENCH_CONCS connections/streams, usersd and the bare handler back to
#      back at each concurrency) for usersd and the bare handler:
#      REST GET, Connect JSON POST, Connect GET (wrk, HTTP/1.1), gRPC (ghz,
#      h2c), Connect proto (bench/load, h2c); CPU time per request (utime +
#      stime of the server from /proc); p50/p99 at half the peak rate,
#      open loop (bench/load), usersd and bare at the same rate; pgbench
#      running the same SELECT; the access log's cost (LOG_LEVEL=info vs
#      warn, back to back); with BENCH_PROFILE=1 (the default) CPU profiles
#      of usersd and of the bare handler under the same load on every entry
#      point, split by bench/prof into the layers that spent the CPU
#      (usersd's code, connect-go, protobuf, net/http, pgx, telemetry, the
#      runtime) per request, with read/write system calls per request.
#   auth. still 100,000 users: what authentication costs. run.sh starts
#      the development OpenID issuer (cmd/devissuer) on a free loopback port
#      (key in $BENCH_OUT/devissuer-key.pem), takes a users:read token from
#      it, and starts a second usersd with AUTH_ISSUER/AUTH_AUDIENCE next to
#      the AUTH_DISABLED=true one; then GetUser peak RPS and CPU per request
#      off vs on, back to back at the same concurrency (phase 2's peak, else
#      the largest of BENCH_CONCS), BENCH_AUTH_ROUNDS times in ABBA order,
#      best of each: REST GET (wrk), gRPC (ghz), Connect proto (bench/load).
#   replica. still 100,000 users (about 2 minutes): reads from a streaming
#      replica. scripts/pgcluster.sh replica makes one of the bench's
#      PostgreSQL (pg_basebackup -R, no apply delay; a unix socket in its
#      own directory) and a second usersd reads from it (READ_DATABASE_URLS,
#      REPLICA_MAX_LAG=1s). GetUser peak RPS, REST GET (wrk) and Connect
#      proto (bench/load), the main usersd (every read on the primary) and
#      the second back to back at the same concurrency (phase 2's peak, else
#      the largest of BENCH_CONCS), BENCH_REPLICA_ROUNDS times in ABBA
#      order, best of each: the ratio, usersd's CPU per request and each
#      PostgreSQL's (primary, replica) per request; the second usersd's
#      /metrics (usersd_db_reads_total by target) must show the replica
#      served the reads. Then a replica that applies BENCH_REPLICA_DELAY
#      late (recovery_min_apply_delay) replaces it: read-after-write pairs
#      (POST /users, then GET it, REST, bench/load raw, open loop at
#      BENCH_QUIET_RATE pairs/s) with the create's Consistency-Token sent
#      back and without, alternating: the pair's p50/p99 and the stale
#      reads (the GET answering 404; with the token there must be none).
#   3. 1,000,000 users: GetUser p50 at BENCH_SCALE_RATE; ListUsers page 1 vs
#      page 1000 (REST GET /users?page_token=..., token found by walking).
#   feed. back to 100,000 users (about 2 minutes): the change feed.
#      BENCH_FEED_EVENTS "created" events are written in SQL
#      (bench/sql/events.sql; seeded users have none); one pager reads them
#      all (ListUserEvents over Connect proto, with and without gzip, and
#      REST GET /user-events; page_size 1000): events/s. Watch latency:
#      BENCH_FEED_WATCHERS Connect proto streams and as many SSE streams
#      on the main usersd and on a second one on the same database, while
#      bench/load makes BENCH_FEED_RATE changes/s (creates and updates,
#      open loop) through the main one for BENCH_FEED_WATCH_DURATION s:
#      p50/p99 from each write's response to each watcher's receipt
#      (target p99 < 1 s). Memory: a fresh usersd's VmRSS growth with
#      BENCH_FEED_IDLE idle watchers, half Connect proto over a few h2c
#      connections, half SSE (target < 64 MiB in all). CreateUser peak
#      (REST via wrk, Connect proto via bench/load, BENCH_CREATE_CONCS)
#      against the release before the feed (the parent of the commit that
#      added migrations/005_user_events.sql, or BENCH_FEED_BASE), built from
#      git archive with the same flags, back to back on the same database
#      (target: >= 0.85 of its RPS).
#   4. back to 100,000 users: CreateUser over REST (wrk) and Connect proto
#      (bench/load): peak RPS of usersd with group commit (the default)
#      and of a second usersd with CREATE_BATCH=off (every create its own
#      transaction; a diagnostic), back to back at each concurrency,
#      each group once the welcome backlog of the one before is worked off
#      and each run with none queued (river_job emptied),
#      against pgbench running usersd's single-create transaction
#      (bench/sql/create.pgbench), with PostgreSQL's CPU per create of
#      each at c8 and c32 (in BENCH_CREATE_CONCS and BENCH_PG_CONCS both);
#      before those, p50/p99 of both at
#      BENCH_QUIET_RATE creates/s (open loop, BENCH_QUIET_ROUNDS on/off
#      pairs in ABBA order, the median round reported): batching must not
#      make a quiet server slower;
#      River's welcome-job throughput and PostgreSQL's CPU per job (taken
#      out of its CPU per create, whose runs work different shares of their
#      jobs within their windows).
#   4sync. the rows of 4 again after PostgreSQL restarts with fsync,
#      synchronous_commit and full_page_writes on, as in production (the
#      data directory's file system is in the report: on tmpfs fsync is
#      free and these rows mean little).
#   usersd's peak RSS is the largest VmHWM over every usersd process that
#   serves the measurements (the feed phase's idle-watcher usersd and
#   previous release are listed, not counted: the first has its own row).
#
# Environment:
#   BENCH_DURATION=5       seconds per measurement
#   BENCH_CONCS="8 32 64"  HTTP connections / HTTP/2 streams swept for peak RPS
#   BENCH_PG_CONCS="8 20 32" pgbench clients swept (usersd's pool is 20;
#                          8 and 32 are where the CreateUser targets compare)
#   BENCH_CREATE_CONCS="8 32" connections/streams of the CreateUser sweeps
#   BENCH_SCALE_RATE=1000  requests/s of the 10k-vs-1M p50 comparison
#   BENCH_PROFILE=1        (default; 0 skips) capture CPU and allocation
#                          profiles of usersd (PPROF_BIND) and of the bare
#                          handler under GetUser load on every entry point,
#                          and of usersd under CreateUser REST load, into
#                          bench/out/, with go tool pprof -top summaries and
#                          the per-layer rows of the report (bench/prof)
#   BENCH_PROFILE_SECONDS=8 length of each CPU profile
#   BENCH_USERSD=path      benchmark this usersd binary instead of building
#   BENCH_OUT=bench/out    where results, raw outputs, profiles and the report go
#   BENCH_PHASES="1 2 auth replica 3 feed 4 4sync" the phases above to run
#                          (e.g. "2" while working on the GetUser hot path,
#                          "auth" for the authentication rows alone,
#                          "replica" for the read replica's, "feed" for the
#                          change feed's, "4 4sync" for the CreateUser rows);
#                          seeding and the AUTH_DISABLED usersd happen
#                          whatever is chosen
#   BENCH_AUTH_ROUNDS=2    auth phase: off/on pairs per entry point
#   BENCH_REPLICA_ROUNDS=2 replica: primary/replica pairs per entry point,
#                          and token/no-token pairs of read-after-write
#   BENCH_REPLICA_DELAY=100ms replica: the read-after-write replica's
#                          recovery_min_apply_delay
#   BENCH_QUIET_RATE=100   phases 4 and 4sync: creates/s of the latency rows
#   BENCH_QUIET_ROUNDS=4   phases 4 and 4sync: on/off pairs of those rows
#   BENCH_QUIET_DURATION=3 seconds of each of those runs (the machine's
#                          drift between rounds matters more than length)
#   BENCH_DRAIN=25         phases 4 and 4sync: most seconds to wait for the
#                          welcome backlog to be worked off before each group
#   BENCH_FEED_EVENTS=100000 feed: events the pager reads
#   BENCH_FEED_RATE=100    feed: changes/s of the watch-latency rows
#   BENCH_FEED_WATCH_DURATION=10 feed: seconds of those changes
#   BENCH_FEED_WATCHERS=2  feed: Connect proto and SSE watchers, each, per usersd
#   BENCH_FEED_IDLE=1000   feed: idle watchers of the memory row
#   BENCH_FEED_ROUNDS=2    feed: rounds of the CreateUser comparison (each
#                          about 35 s; best of all reported: on a shared
#                          machine one round's ratio moves by 20%)
#   BENCH_FEED_CREATE_DURATION=3 feed: seconds of each of those runs
#   BENCH_FEED_BASE=rev    feed: the release to compare CreateUser with
#   BENCH_FEED_WITH=rev    feed: compare that commit's usersd (e.g. the one
#                          that added the feed, to leave out later changes)
#                          instead of this tree's
#
# How every usersd runs (on purpose, whatever .env says):
#   AUTH_DISABLED=true, except the auth phase's second usersd, which verifies
#     real tokens: the GetUser rows compare usersd with the bare handler and
#     the CreateUser rows with pgbench, and neither authenticates; the auth
#     phase measures what authentication adds to that same configuration.
#   AUTH_DISABLED=true for the replica phase's second usersd (reads from the
#     replica) too: its rows compare with the main usersd's, and what
#     tokens cost is the auth phase's question.
#   AUTH_DISABLED=true for every usersd of the feed phase too (the second
#     one the watchers of the latency rows poll, the fresh one of the
#     memory row, the previous release, a BENCH_FEED_WITH build): their
#     rows measure the feed, and the CreateUser comparison must match phase
#     4's configuration.
#   CREATE_BATCH=on (group commit, the default), except phase 4's second
#     usersd, CREATE_BATCH=off: the diagnostic the CreateUser rows compare
#     group commit with.
#   RATE_LIMIT_RPS=0 and RATE_LIMIT_IP_RPS=0 in every run: all load comes from
#     one client IP (and in the auth phase one token subject), which the
#     defaults would throttle at 20/s (per IP, for requests without a valid
#     token: every request when authentication is off) or 100/s (per
#     subject). The bench measures serving, not the limiter.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DUR=${BENCH_DURATION:-5}
CONCS=${BENCH_CONCS:-"8 32 64"}
PG_CONCS=${BENCH_PG_CONCS:-"8 20 32"}
SCALE_RATE=${BENCH_SCALE_RATE:-1000}
PROFILE=${BENCH_PROFILE:-1}
PSECS=${BENCH_PROFILE_SECONDS:-8}
CREATE_CONCS=${BENCH_CREATE_CONCS:-"8 32"}
PHASES=${BENCH_PHASES:-"1 2 auth replica 3 feed 4 4sync"}
AUTH_ROUNDS=${BENCH_AUTH_ROUNDS:-2}
QUIET_RATE=${BENCH_QUIET_RATE:-100}
QUIET_ROUNDS=${BENCH_QUIET_ROUNDS:-4}
QUIET_DUR=${BENCH_QUIET_DURATION:-3}
DRAIN=${BENCH_DRAIN:-25}
FEED_EVENTS=${BENCH_FEED_EVENTS:-100000}
FEED_RATE=${BENCH_FEED_RATE:-100}
FEED_WATCH_DUR=${BENCH_FEED_WATCH_DURATION:-10}
FEED_WATCHERS=${BENCH_FEED_WATCHERS:-2}
FEED_IDLE=${BENCH_FEED_IDLE:-1000}
FEED_ROUNDS=${BENCH_FEED_ROUNDS:-2}
FEED_CREATE_DUR=${BENCH_FEED_CREATE_DURATION:-3}
REPL_ROUNDS=${BENCH_REPLICA_ROUNDS:-2}
REPL_DELAY=${BENCH_REPLICA_DELAY:-100ms}
want() { [[ " $PHASES " == *" $1 "* ]]; }
MAXC=$(tr ' ' '\n' <<<"$CONCS" | sort -n | tail -n 1)
H2CONNS=4 # TCP connections the HTTP/2 tools spread their streams over
OUT=${BENCH_OUT:-bench/out}
mkdir -p "$OUT"
RES=$OUT/results.txt
: >"$RES"
RAW=$OUT/raw # every tool's own output: time-tool-mode-conc|rate-port.txt
rm -rf "$RAW"
mkdir -p "$RAW"
T_START=$(date +%s)
LOADAVG0=$(awk '{print $1 "/" $2 "/" $3}' /proc/loadavg)

log() { printf '[bench %4ds] %s\n' $(($(date +%s) - T_START)) "$*" >&2; }
# note_load PHASE: the machine's load average as a phase starts, and the
# share of the CPUs other processes used over one second in which the bench
# does nothing (the load average counts the bench's own phase before, and
# moves too slowly to tell a quiet minute); the report prints them all.
note_load() {
  local avg c
  avg=$(awk '{print $1 "/" $2 "/" $3}' /proc/loadavg)
  cpu_mark load
  sleep 1
  c=$(cpu_since load)
  echo "load phase=$1 avg=$avg $c" >>"$RES"
  log "phase $1: load average $avg; other processes used $(awk -v o="$(field others "$c")" 'BEGIN {printf "%.0f%%", o * 100}') of the CPUs over the last second"
}
die() { log "FAILED: $*"; exit 1; }

# --- tools -----------------------------------------------------------------
need_apt() { # need_apt COMMAND PACKAGE
  command -v "$1" >/dev/null && return 0
  log "installing $2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }
  command -v "$1" >/dev/null || die "$1 not available"
}
need_apt wrk wrk
need_apt h2load nghttp2-client
need_apt jq jq
need_apt curl curl
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -x "$PGBIN/pgbench" ] || need_apt pgbench postgresql-client
PGBENCH=$PGBIN/pgbench; [ -x "$PGBENCH" ] || PGBENCH=$(command -v pgbench)
GHZ_VERSION=v0.93.0
GHZ=$ROOT/bench/.bin/ghz
if [ ! -x "$GHZ" ]; then
  log "building ghz $GHZ_VERSION into bench/.bin"
  (cd /tmp && GOBIN=$ROOT/bench/.bin go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION") || die "go install ghz"
fi

# --- work dir, processes, cleanup ----------------------------------------
WORK=$(mktemp -d /tmp/usersd-bench.XXXXXX)
chmod 755 "$WORK"
USERSD_PID= BARE_PID= LOAD_PID= AUTH_PID= ISSUER_PID= OFF_PID= FEEDB_PID= IDLE_PID= PREV_PID= WITH_PID= REPL_PID=
cleanup() {
  set +e
  for p in $USERSD_PID $BARE_PID $LOAD_PID $AUTH_PID $ISSUER_PID $OFF_PID $FEEDB_PID $IDLE_PID $PREV_PID $WITH_PID $REPL_PID; do kill "$p" 2>/dev/null; done
  for p in $USERSD_PID $BARE_PID $LOAD_PID $AUTH_PID $ISSUER_PID $OFF_PID $FEEDB_PID $IDLE_PID $PREV_PID $WITH_PID $REPL_PID; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  for d in "$WORK"/pgr*; do
    [ -d "$d" ] && scripts/pgcluster.sh stop "$d" immediate >/dev/null 2>&1
  done
  [ -d "$WORK/pg" ] && scripts/pgcluster.sh stop "$WORK/pg" immediate >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port: a port nobody listens on, below the ephemeral range: a port
# in it can be taken by another process's outgoing connection between
# this check and usersd's bind (it happened with tests running alongside).
EPHEMERAL_LO=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$EPHEMERAL_LO" -gt 11000 ] 2>/dev/null || EPHEMERAL_LO=60000 # no room below it: take the chance
free_port() {
  local p
  while :; do
    p=$((10000 + RANDOM % (EPHEMERAL_LO - 10000)))
    [ -z "$(ss -Hltn "sport = :$p")" ] && { echo "$p"; return; }
  done
}

# --- build -----------------------------------------------------------------
LDFLAGS='-s -w'
if [ -n "${BENCH_USERSD:-}" ]; then
  cp "$BENCH_USERSD" "$WORK/usersd"
else
  log "make build (release flags: -trimpath -ldflags '-s -w')"
  make --no-print-directory build >&2 || die "make build"
  cp bin/usersd "$WORK/usersd"
fi
BIN_BYTES=$(stat -c %s "$WORK/usersd")
go build -trimpath -ldflags "$LDFLAGS" -o "$WORK/bare" ./bench/bare || die "build bench/bare"
go build -trimpath -ldflags "$LDFLAGS" -o "$WORK/load" ./bench/load || die "build bench/load"
go build -trimpath -ldflags "$LDFLAGS" -o "$WORK/prof" ./bench/prof || die "build bench/prof"
go build -trimpath -ldflags "$LDFLAGS" -o "$WORK/cpu" ./bench/cpu || die "build bench/cpu"
if want auth; then
  go build -trimpath -ldflags "$LDFLAGS" -o "$WORK/devissuer" ./cmd/devissuer || die "build cmd/devissuer"
fi
# The feed phase's previous release: the commit before the one that added
# the change feed (BENCH_FEED_BASE to choose another), and with
# BENCH_FEED_WITH a commit to stand for "with the feed" instead of this
# tree (whose later changes are in its rows too). Each is built with the
# same flags from a copy of its tree that is deleted at once.
build_rev() { # build_rev REV OUT: prints the short hash
  local short
  short=$(git rev-parse --short "$1^{commit}") || die "$1 is not a commit"
  log "building usersd $short (git archive into $WORK, deleted after)"
  mkdir "$WORK/src-$short"
  git archive "$short" | tar -x -C "$WORK/src-$short"
  (cd "$WORK/src-$short" && go build -trimpath -ldflags "$LDFLAGS -X main.version=$short" -o "$2" ./cmd/usersd) >&2 ||
    die "build usersd $short"
  rm -rf "$WORK/src-$short"
  echo "$short"
}
PREV= WITH=
if want feed; then
  feed_commit=$(git log --diff-filter=A --format=%H -n 1 -- migrations/005_user_events.sql)
  [ -n "$feed_commit" ] || die "no commit adds migrations/005_user_events.sql"
  PREV=$(build_rev "${BENCH_FEED_BASE:-$feed_commit^}" "$WORK/usersd-prev")
  [ -n "${BENCH_FEED_WITH:-}" ] && WITH=$(build_rev "$BENCH_FEED_WITH" "$WORK/usersd-with")
fi
"$WORK/load" protoset -o "$WORK/users.protoset"
echo "binary bytes=$BIN_BYTES" >>"$RES"

# --- PostgreSQL --------------------------------------------------------------
log "fresh PostgreSQL in $WORK/pg (fsync off)"
scripts/pgcluster.sh init "$WORK/pg" --fast
echo "shared_buffers = 256MB" >>"$WORK/pg/data/postgresql.conf"
scripts/pgcluster.sh start "$WORK/pg"
scripts/pgcluster.sh createdb "$WORK/pg" bench
DBURL=$(scripts/pgcluster.sh url "$WORK/pg" bench)
PGPORT=$(sed -n 4p "$WORK/pg/data/postmaster.pid")
PGVERSION=$("$PGBIN/postgres" --version | awk '{print $3}')
CPU_PGS=(-pg "pg=$WORK/pg")
psqlq() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK/pg" -p "$PGPORT" -U postgres -d bench "$@"; }

DATABASE_URL=$DBURL LOG_LEVEL=warn "$WORK/usersd" migrate >"$WORK/migrate.log" 2>&1 ||
  { cat "$WORK/migrate.log" >&2; die "usersd migrate"; }
T0MS=$(($(date +%s%3N) - 60000))
sed "s/__T0MS__/$T0MS/g" bench/sql/setup.sql | psqlq -f - >/dev/null

seed() { # seed LO HI
  local t=$(date +%s)
  psqlq -v lo="$1" -v hi="$2" -f bench/sql/seed.sql >/dev/null
  log "seeded users $1..$2 in $(($(date +%s) - t)) s"
}
ids_file() { # ids_file N FILE: 10,000 random seeded ids among users 1..N
  psqlq -At -c "SELECT bench_id(1 + floor(random() * $1)::bigint) FROM generate_series(1, 10000)" >"$2"
  jq -R '{id: .}' "$2" | jq -s . >"$2.json"
}

# --- usersd and the bare handler ---------------------------------------------
PORT=$(free_port)
BARE_PORT=$(free_port)
PPROF_PORT=$(free_port)
BARE_PPROF_PORT=$(free_port)
OFF_PORT=$(free_port)
HWM_KB=0
wait_http() { # wait_http URL PID
  for _ in $(seq 300); do
    curl -sf -o /dev/null "$1" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
# launch_usersd PORT LOG_LEVEL off|on [PPROF_BIND [CREATE_BATCH]]: starts
# usersd, leaves its pid in LAUNCHED_PID and returns once /healthz answers.
# Authentication is set explicitly either way (see the header): off is
# AUTH_DISABLED=true; on is AUTH_ISSUER=$ISSUER_URL with audience usersd.
# Rate limits are off in both (RATE_LIMIT_RPS=0, RATE_LIMIT_IP_RPS=0): one
# client IP and one token would otherwise be throttled at 20/s or 100/s.
# CREATE_BATCH is set explicitly too: on (group commit) unless told off.
# LAUNCH_BIN runs another binary (the feed phase's previous release),
# LAUNCH_ENV (NAME=value ..., no spaces in values) adds to its environment,
# LAUNCH_TAG names its log apart from the others'.
launch_usersd() {
  local port=$1 level=$2 authn=$3 pprof=${4:-} batch=${5:-on}
  local log="$WORK/usersd.$2.auth-$3.batch-$batch${LAUNCH_TAG:+.$LAUNCH_TAG}.log"
  local auth_env=(AUTH_DISABLED=true AUTH_ISSUER= AUTH_AUDIENCE=)
  [ "$authn" = on ] && auth_env=(AUTH_DISABLED=false AUTH_ISSUER="$ISSUER_URL" AUTH_AUDIENCE=usersd)
  # shellcheck disable=SC2086
  env DATABASE_URL="$DBURL" BIND="127.0.0.1:$port" LOG_LEVEL="$level" PPROF_BIND="$pprof" \
    RATE_LIMIT_RPS=0 RATE_LIMIT_IP_RPS=0 CREATE_BATCH="$batch" "${auth_env[@]}" ${LAUNCH_ENV:-} \
    "${LAUNCH_BIN:-$WORK/usersd}" >"$log" 2>&1 &
  LAUNCHED_PID=$!
  wait_http "http://127.0.0.1:$port/healthz" "$LAUNCHED_PID" || { tail -20 "$log" >&2; die "usersd did not become ready"; }
}
# start_usersd LOG_LEVEL: the usersd of every phase, on PORT, with
# AUTH_DISABLED=true: its rows compare against the bare handler and pgbench,
# which have no authentication (the auth phase measures that separately).
start_usersd() {
  local pprof=
  [ "$PROFILE" = 1 ] && pprof=127.0.0.1:$PPROF_PORT
  launch_usersd "$PORT" "$1" off "$pprof"
  USERSD_PID=$LAUNCHED_PID
}
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
stop_pid() { # stop_pid PID
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 250); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
stop_usersd() {
  local h
  h=$(hwm "$USERSD_PID")
  [ "$h" -gt "$HWM_KB" ] && HWM_KB=$h
  stop_pid "$USERSD_PID"
  USERSD_PID=
}
start_bare() {
  local pprof=
  [ "$PROFILE" = 1 ] && pprof=127.0.0.1:$BARE_PPROF_PORT
  env DATABASE_URL="$DBURL" BIND="127.0.0.1:$BARE_PORT" PPROF_BIND="$pprof" "$WORK/bare" >"$WORK/bare.log" 2>&1 &
  BARE_PID=$!
  wait_http "http://127.0.0.1:$BARE_PORT/livez" "$BARE_PID" || { cat "$WORK/bare.log" >&2; die "bare handler did not start"; }
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# cpu_mark KEY ... cpu_since KEY: over that window, the share of the
# machine's CPUs that processes other than the bench's used ("others=",
# 0..1; the bench is this script's process tree and the PostgreSQL servers
# of CPU_PGS), and each server's CPU time ("pg_ticks=", the postmaster's
# whole tree: backends, walwriter, checkpointer, autovacuum; "pgr_ticks="
# for the replica phase's replica): CPU_PGS names the servers, set once
# PostgreSQL is up. See bench/cpu.
cpu_mark() { "$WORK/cpu" -root $$ "${CPU_PGS[@]}" -save "$WORK/cpu.$1" 2>/dev/null || rm -f "$WORK/cpu.$1"; }
cpu_since() { [ -f "$WORK/cpu.$1" ] && "$WORK/cpu" -root $$ "${CPU_PGS[@]}" -since "$WORK/cpu.$1" 2>/dev/null || true; }
# syscalls PID: read and write system calls the process has made so far.
syscalls() { awk '/^syscr/ {r = $2} /^syscw/ {w = $2} END {print r, w}' "/proc/$1/io"; }

# --- one measurement: run_tool TOOL MODE URLPORT PID CONC|RATE IDS ------------
# Prints "rps=.. ok=.. errors=.. total=.. ticks=.. p50=.. p99=.." (ms).
# With RUN_TOKEN set, every request carries "Authorization: Bearer
# $RUN_TOKEN" (wrk: WRK_HEADER; ghz: --metadata; bench/load: -header).
RUN_TOKEN=
run_tool() {
  local tool=$1 mode=$2 port=$3 pid=$4 n=$5 ids=$6 extra=${7:-}
  local t0 t1 line cw out="$RAW/$(date +%H%M%S)-$tool-$mode-$n-$port.txt"
  cpu_mark run
  t0=$(ticks "$pid")
  case $tool in
  wrk)
    WRK_MODE=$mode WRK_IDS=$ids WRK_PATH=$extra WRK_NONCE="$RANDOM$RANDOM" \
      WRK_HEADER="${RUN_TOKEN:+Authorization: Bearer $RUN_TOKEN}" \
      timeout $((DUR + 30)) wrk -t2 -c"$n" -d"${DUR}s" --timeout 5s -s bench/wrk.lua "http://127.0.0.1:$port" >"$out" 2>&1 || true
    t1=$(ticks "$pid") cw=$(cpu_since run)
    line=$(awk -v ticks=$((t1 - t0)) '/^WRK_RESULT/ {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        err = v["status"] + v["connect"] + v["read"] + v["write"] + v["timeout"]
        ok = v["requests"] - v["status"]
        printf "rps=%.1f ok=%d errors=%d total=%d ticks=%d p50=%.3f p99=%.3f\n",
          ok / (v["duration_us"] / 1e6), ok, err, v["requests"], ticks, v["p50_us"] / 1000, v["p99_us"] / 1000 }' "$out")
    ;;
  ghz)
    local md=()
    [ -n "$RUN_TOKEN" ] && md=(--metadata "{\"authorization\":\"Bearer $RUN_TOKEN\"}")
    timeout $((DUR + 30)) "$GHZ" --insecure --protoset "$WORK/users.protoset" --call users.v1.UserService.GetUser \
      -D "$ids.json" "${md[@]}" -c "$n" --connections "$H2CONNS" -z "${DUR}s" -O json "127.0.0.1:$port" >"$out" 2>"$WORK/ghz.err" || true
    t1=$(ticks "$pid") cw=$(cpu_since run)
    # Calls still in flight when -z ends fail with "transport is closing"
    # (or, a little later, Canceled "the client connection is closing");
    # up to one per worker is that cut-off, not a server error.
    line=$(jq -r --argjson ticks $((t1 - t0)) --argjson c "$n" '
      (.statusCodeDistribution.OK // 0) as $ok |
      ([.errorDistribution // {} | to_entries[] | select(.key | test("transport is closing|client connection is closing|context canceled")) | .value] | add // 0) as $cut |
      (.count - $ok - (if $cut <= $c then $cut else 0 end)) as $err |
      "rps=\($ok / (.total / 1e9)) ok=\($ok) errors=\($err) total=\(.count) ticks=\($ticks) p50=\((.latencyDistribution // [] | map(select(.percentage == 50)) | .[0].latency // 0) / 1e6) p99=\((.latencyDistribution // [] | map(select(.percentage == 99)) | .[0].latency // 0) / 1e6)"' "$out" ||
      { cat "$WORK/ghz.err" >&2; echo "rps=0 ok=0 errors=1 total=0 ticks=0 p50=0 p99=0"; })
    ;;
  closed | open)
    local arg="-c $n"
    [ "$tool" = open ] && arg="-rate $n"
    # The open loop runs at a higher priority so that its schedule, not the
    # other processes on the box, decides when requests start.
    local nice=
    [ "$tool" = open ] && nice="nice -n -5"
    local hdr=()
    [ -n "$RUN_TOKEN" ] && hdr=(-header "Authorization: Bearer $RUN_TOKEN")
    # shellcheck disable=SC2086
    timeout $((DUR + 60)) $nice "$WORK/load" "$tool" -url "http://127.0.0.1:$port" -proto "$mode" $arg \
      -conns "$H2CONNS" -d "${DUR}s" -ids "$ids" "${hdr[@]}" $extra >"$out" 2>"$WORK/load.err" || true
    t1=$(ticks "$pid") cw=$(cpu_since run)
    line=$(jq -r --argjson ticks $((t1 - t0)) '"rps=\(.rps) ok=\(.ok) errors=\(.errors) total=\(.total) ticks=\($ticks) p50=\(.p50_ms) p99=\(.p99_ms) lag99=\(.lag_p99_ms // 0) ccpu=\(.client_cpu_us // 0)"' "$out" 2>/dev/null ||
      { cat "$WORK/load.err" >&2; echo "rps=0 ok=0 errors=1 total=0 ticks=0 p50=0 p99=0"; })
    ;;
  esac
  echo "$line $cw"
}
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

# sweep SECTION ENTRY TOOL MODE IDS TARGET:PORT:PID...: peak RPS of each
# target over $CONCS (or SWEEP_CONCS), the targets back to back at each concurrency (in
# turn first, so that drift on the machine hits them alike); records every
# point, with REC_EXTRA (key=value ...) added, runs SWEEP_BEFORE before
# each point and adds what SWEEP_AFTER prints to it, and leaves each target's
# best error-free RPS and its concurrency in BEST[target] / BESTC[target].
declare -A BEST BESTC
REC_EXTRA=
sweep() {
  local section=$1 entry=$2 tool=$3 mode=$4 ids=$5 c r i=0 spec target port pid
  shift 5
  local targets=("$@")
  for spec in "${targets[@]}"; do BEST[${spec%%:*}]=0 BESTC[${spec%%:*}]=0; done
  for c in ${SWEEP_CONCS:-$CONCS}; do
    local order=("${targets[@]}")
    if [ $((i % 2)) = 1 ]; then # reversed
      order=()
      for ((j = ${#targets[@]} - 1; j >= 0; j--)); do order+=("${targets[j]}"); done
    fi
    i=$((i + 1))
    for spec in "${order[@]}"; do
      IFS=: read -r target port pid <<<"$spec"
      [ -n "${SWEEP_BEFORE:-}" ] && $SWEEP_BEFORE
      r=$(run_tool "$tool" "$mode" "$port" "$pid" "$c" "$ids")
      [ -n "${SWEEP_AFTER:-}" ] && r="$r $($SWEEP_AFTER)"
      echo "$section entry=$entry target=$target tool=$tool conc=$c $REC_EXTRA $r" >>"$RES"
      log "$section $entry $target c=$c $REC_EXTRA: $r"
      if [ "$(field errors "$r")" = 0 ] && awk -v a="$(field rps "$r")" -v b="${BEST[$target]}" 'BEGIN {exit !(a > b)}'; then
        BEST[$target]=$(field rps "$r") BESTC[$target]=$c
      fi
    done
  done
}

pgbench_run() { # pgbench_run SECTION SCRIPT CLIENTS [-D ...]
  local section=$1 script=$2 c=$3 out="$RAW/$(date +%H%M%S)-pgbench-$1-$3.txt"
  shift 3
  # Its clients connect once (no -C), like usersd's pool: PostgreSQL's CPU
  # per transaction is not a connection's start-up.
  cpu_mark pgbench
  timeout $((DUR + 60)) "$PGBENCH" -h "$WORK/pg" -p "$PGPORT" -U postgres -n -M prepared -c "$c" -j 2 -T "$DUR" \
    -f "$script" "$@" bench >"$out" 2>&1 || { tail -5 "$out" >&2; }
  local cw tps ok failed
  cw=$(cpu_since pgbench)
  tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out" | tail -1)
  ok=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
  local r="rps=${tps:-0} ok=${ok:-0} errors=${failed:-0} total=$((${ok:-0} + ${failed:-0})) $cw${PGBENCH_AFTER:+ $($PGBENCH_AFTER)}"
  echo "$section entry=pgbench target=pgbench tool=pgbench conc=$c $REC_EXTRA $r" >>"$RES"
  log "$section pgbench c=$c: $r"
}

# profile NAME TARGET CONC PROTO IDS [ENTRY]: a PSECS-second CPU profile and
# an allocation profile of TARGET (usersd, or bare for the bare handler)
# under bench/load closed-loop load, with pprof -top summaries. With ENTRY,
# also a "prof" record: the profile split into layers per request
# (bench/prof), the server's CPU time per request (ticks) and its read and
# write system calls per request, over the profile's window.
profile() {
  local name=$1 target=$2 c=$3 proto=$4 ids=$5 entry=${6:-} port=$PORT pid=$USERSD_PID pport=$PPROF_PORT cpid
  if [ "$target" = bare ]; then port=$BARE_PORT pid=$BARE_PID pport=$BARE_PPROF_PORT; fi
  log "profiling $target: $name ($proto, c=$c, ${PSECS} s)"
  "$WORK/load" closed -url "http://127.0.0.1:$port" -proto "$proto" -c "$c" -conns "$H2CONNS" -d "$((PSECS + 3))s" \
    -ids "$ids" >"$WORK/profile-load.json" 2>/dev/null &
  LOAD_PID=$!
  sleep 1.5
  local t0 io0 t1 io1 cw
  cpu_mark prof
  t0=$(ticks "$pid") io0=$(syscalls "$pid")
  curl -sf -o "$OUT/$name-cpu.pprof" "http://127.0.0.1:$pport/debug/pprof/profile?seconds=$PSECS" &
  cpid=$!
  curl -sf -o "$OUT/$name-allocs.pprof" "http://127.0.0.1:$pport/debug/pprof/allocs?seconds=$PSECS" || log "allocs profile failed"
  wait "$cpid" || log "cpu profile failed"
  t1=$(ticks "$pid") io1=$(syscalls "$pid") cw=$(cpu_since prof)
  wait "$LOAD_PID" || true
  LOAD_PID=
  go tool pprof -top -nodecount=40 "$OUT/$name-cpu.pprof" >"$OUT/$name-cpu-top.txt" 2>/dev/null || true
  go tool pprof -top -cum -nodecount=80 "$OUT/$name-cpu.pprof" >"$OUT/$name-cpu-cum.txt" 2>/dev/null || true
  go tool pprof -top -sample_index=alloc_space -nodecount=40 "$OUT/$name-allocs.pprof" >"$OUT/$name-allocs-top.txt" 2>/dev/null || true
  go tool pprof -top -sample_index=alloc_objects -nodecount=40 "$OUT/$name-allocs.pprof" >"$OUT/$name-allocs-objects-top.txt" 2>/dev/null || true
  [ -n "$entry" ] || return 0
  local rps reqs layers
  rps=$(jq -r '.rps // 0' "$WORK/profile-load.json" 2>/dev/null || echo 0)
  reqs=$(awk -v r="$rps" -v s="$PSECS" 'BEGIN {printf "%.0f", r * s}')
  [ "$reqs" -gt 0 ] || { log "profile $name: no requests"; return 0; }
  layers=$("$WORK/prof" -reqs "$reqs" "$OUT/$name-cpu.pprof") || { log "bench/prof failed on $name"; return 0; }
  layers="$layers $("$WORK/prof" -reqs "$reqs" -sample alloc_objects -prefix a_ "$OUT/$name-allocs.pprof" 2>/dev/null)"
  read -r r0 w0 <<<"$io0"
  read -r r1 w1 <<<"$io1"
  echo "prof entry=$entry target=$target tool=closed conc=$c rps=$rps reqs=$reqs" \
    "cpu_us=$(awk -v t=$((t1 - t0)) -v n="$reqs" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')" \
    "syscr=$(awk -v d=$((r1 - r0)) -v n="$reqs" 'BEGIN {printf "%.2f", d / n}')" \
    "syscw=$(awk -v d=$((w1 - w0)) -v n="$reqs" 'BEGIN {printf "%.2f", d / n}') $layers $cw" >>"$RES"
  log "profile $target $entry: $(tail -n 1 "$RES")"
}

warm() { # warm PROTO PORT IDS [RATE]: two seconds of load, not measured (RUN_TOKEN as in run_tool)
  local hdr=()
  [ -n "$RUN_TOKEN" ] && hdr=(-header "Authorization: Bearer $RUN_TOKEN")
  "$WORK/load" open -url "http://127.0.0.1:$2" -proto "$1" -rate "${4:-$SCALE_RATE}" -d 2s -ids "$3" "${hdr[@]}" >/dev/null 2>&1 || true
}
note_rss() { # note_rss PHASE [PID]: a usersd's VmHWM so far (default the main one)
  local h
  h=$(hwm "${2:-$USERSD_PID}")
  [ "$h" -gt "$HWM_KB" ] && HWM_KB=$h
  echo "rss phase=$1 hwm_kb=$h" >>"$RES"
}

# =========================== 1. 10,000 users =================================
seed 1 10000
ids_file 10000 "$WORK/ids10k"
start_usersd warn
if want 1; then
  note_load 1
  warm connect-proto "$PORT" "$WORK/ids10k"
  r=$(run_tool open connect-proto "$PORT" "$USERSD_PID" "$SCALE_RATE" "$WORK/ids10k")
  echo "scale entry=users10k target=usersd tool=load rate=$SCALE_RATE $r" >>"$RES"
  log "scale 10k users @ $SCALE_RATE rps: $r"
fi

# =========================== 2. 100,000 users ================================
seed 10001 100000
ids_file 100000 "$WORK/ids"
IDS=$WORK/ids
declare -A PEAK PEAKC
if want 2; then
note_load 2
start_bare

# entry point : wrk mode or load protocol : peak tool : load protocol of the
# constant-rate phase
ENTRIES="rest-h1:rest:wrk:rest cjson-h1:cjson:wrk:connect-json cget-h1:cget:wrk:connect-get grpc-h2c:grpc:ghz:grpc cproto-h2c:connect-proto:closed:connect-proto"
for e in $ENTRIES; do
  IFS=: read -r entry mode tool _ <<<"$e"
  sweep get "$entry" "$tool" "$mode" "$IDS" "usersd:$PORT:$USERSD_PID" "bare:$BARE_PORT:$BARE_PID"
  PEAK[$entry]=${BEST[usersd]} PEAKC[$entry]=${BESTC[usersd]}
done
note_rss peak

# p50/p99 at half the peak, open loop, every entry point of usersd; the bare
# handler at the same rate shows what the machine and the generator alone
# give.
for e in $ENTRIES; do
  IFS=: read -r entry _ _ lproto <<<"$e"
  rate=$(awk -v p="${PEAK[$entry]}" 'BEGIN {r = int(p / 2); print (r < 100 ? 100 : r)}')
  r=$(run_tool open "$lproto" "$PORT" "$USERSD_PID" "$rate" "$IDS")
  echo "latency entry=$entry target=usersd tool=load rate=$rate $r" >>"$RES"
  log "latency $entry usersd @ $rate rps: $r"
  r=$(run_tool open "$lproto" "$BARE_PORT" "$BARE_PID" "$rate" "$IDS")
  echo "latency entry=$entry target=bare tool=load rate=$rate $r" >>"$RES"
  log "latency $entry bare @ $rate rps: $r"
done
note_rss latency
stop_pid "$BARE_PID"
BARE_PID=

for c in $PG_CONCS; do pgbench_run get bench/sql/get.pgbench "$c" -D nusers=100000; done

# Where the CPU goes, usersd against the bare handler under the same load
# on every entry point (bench/load: the same client for both).
if [ "$PROFILE" = 1 ]; then
  start_bare
  for e in $ENTRIES; do
    IFS=: read -r entry _ _ lproto <<<"$e"
    c=${PEAKC[$entry]:-32}
    [ "$c" = 0 ] && c=32
    name=getuser-$entry
    [ "$entry" = cproto-h2c ] && name=getuser # the name earlier runs used
    profile "$name" usersd "$c" "$lproto" "$IDS" "$entry"
    profile "$name-bare" bare "$c" "$lproto" "$IDS" "$entry"
  done
  stop_pid "$BARE_PID"
  BARE_PID=
fi

# The access log's cost: the same run back to back with LOG_LEVEL=warn and
# LOG_LEVEL=info (one JSON line per request, to a file).
ALOG="rest-h1:rest:wrk cproto-h2c:connect-proto:closed"
for e in $ALOG; do
  IFS=: read -r entry mode tool <<<"$e"
  c=${PEAKC[$entry]:-32}; [ "$c" = 0 ] && c=32
  r=$(run_tool "$tool" "$mode" "$PORT" "$USERSD_PID" "$c" "$IDS")
  echo "accesslog entry=$entry target=usersd log=warn tool=$tool conc=$c $r" >>"$RES"
done
note_rss accesslog-off
stop_usersd
start_usersd info
for e in $ALOG; do
  IFS=: read -r entry mode tool <<<"$e"
  c=${PEAKC[$entry]:-32}; [ "$c" = 0 ] && c=32
  r=$(run_tool "$tool" "$mode" "$PORT" "$USERSD_PID" "$c" "$IDS")
  echo "accesslog entry=$entry target=usersd log=info tool=$tool conc=$c $r" >>"$RES"
  log "access log on, $entry: $r"
done
note_rss accesslog-on
stop_usersd
start_usersd warn
fi # phase 2

# ============== auth. Authentication's cost, 100,000 users ====================
# GetUser with a bearer token against the AUTH_DISABLED=true usersd (the
# main one, as in phase 2), the same binary, back to back at the same
# concurrency. Both have the rate limits off, so this is authentication
# alone: the token is verified once, then found in usersd's token cache.
if want auth; then
note_load auth
ISS_PORT=$(free_port)
AUTH_PORT=$(free_port)
while [ "$AUTH_PORT" = "$ISS_PORT" ]; do AUTH_PORT=$(free_port); done
ISSUER_URL=http://127.0.0.1:$ISS_PORT
ISSUER_KEY=$OUT/devissuer-key.pem # created by devissuer when missing
"$WORK/devissuer" serve -addr "127.0.0.1:$ISS_PORT" -audience usersd -key "$ISSUER_KEY" >"$WORK/devissuer.log" 2>&1 &
ISSUER_PID=$!
wait_http "$ISSUER_URL/.well-known/openid-configuration" "$ISSUER_PID" || { cat "$WORK/devissuer.log" >&2; die "devissuer did not start"; }
# GetUser needs users:read; 3 h outlives any run.
TOKEN=$("$WORK/devissuer" token -addr "127.0.0.1:$ISS_PORT" -audience usersd -key "$ISSUER_KEY" \
  -scope users:read -sub bench -ttl 3h) || die "devissuer token"
launch_usersd "$AUTH_PORT" warn on
AUTH_PID=$LAUNCHED_PID
# /healthz answers before the issuer's keys are loaded (in the background;
# until then API calls are unavailable): wait for an authenticated GET.
probe="http://127.0.0.1:$AUTH_PORT/users/$(head -n 1 "$IDS")"
for _ in $(seq 300); do
  curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "$probe" && break
  kill -0 "$AUTH_PID" 2>/dev/null || { tail -20 "$WORK/usersd.warn.auth-on.log" >&2; die "usersd (auth on) exited"; }
  sleep 0.1
done
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "$probe" ||
  { tail -20 "$WORK/usersd.warn.auth-on.log" >&2; die "usersd (auth on) refuses the devissuer token"; }
# ... and that it is really on: no token, no user.
code=$(curl -s -o /dev/null -w '%{http_code}' "$probe")
[ "$code" = 401 ] || die "usersd (auth on) answered $code to a GET without a token, want 401"
log "auth: usersd with AUTH_ISSUER=$ISSUER_URL on :$AUTH_PORT accepts the token"
RUN_TOKEN=$TOKEN warm connect-proto "$AUTH_PORT" "$IDS"
RUN_TOKEN=$TOKEN warm rest "$AUTH_PORT" "$IDS"

AUTHE="rest-h1:rest:wrk grpc-h2c:grpc:ghz cproto-h2c:connect-proto:closed"
for e in $AUTHE; do
  IFS=: read -r entry mode tool <<<"$e"
  c=${PEAKC[$entry]:-$MAXC}; [ "$c" = 0 ] && c=$MAXC
  for round in $(seq "$AUTH_ROUNDS"); do
    order="off on"
    [ $((round % 2)) = 0 ] && order="on off" # ABBA: drift hits both alike
    for a in $order; do
      if [ "$a" = on ]; then
        res=$(RUN_TOKEN=$TOKEN run_tool "$tool" "$mode" "$AUTH_PORT" "$AUTH_PID" "$c" "$IDS")
      else
        res=$(run_tool "$tool" "$mode" "$PORT" "$USERSD_PID" "$c" "$IDS")
      fi
      echo "auth entry=$entry target=usersd auth=$a round=$round tool=$tool conc=$c $res" >>"$RES"
      log "auth $a, $entry c=$c (round $round): $res"
    done
  done
done
note_rss auth-off
note_rss auth-on "$AUTH_PID"
stop_pid "$AUTH_PID"
AUTH_PID=
stop_pid "$ISSUER_PID"
ISSUER_PID=
fi # phase auth

# ============== replica. Reads from a streaming replica, 100,000 users ==========
# GetUser's peak with every read on the primary (the main usersd) against
# a second usersd of the same binary whose reads go to a streaming replica
# of the bench's PostgreSQL (READ_DATABASE_URLS; usersd sends a read to
# the primary only while the replica is unusable or too far behind), back
# to back at the same concurrency; then read-after-write through a replica
# that applies WAL 100 ms late, with the Consistency-Token and without.
# The second usersd has AUTH_DISABLED=true like the main one (see the
# header): its rows compare with the main usersd's, and tokens are the
# auth phase's subject.
# replica_up DIR [DELAY]: a streaming replica of the bench's cluster in
# DIR, replaying DELAY behind; its server counts as "pgr" in the CPU rows.
replica_up() {
  scripts/pgcluster.sh replica "$WORK/pg" "$1" "${2:-0}"
  scripts/pgcluster.sh start "$1"
  CPU_PGS=(-pg "pg=$WORK/pg" -pg "pgr=$1")
  REPL_URL=$(scripts/pgcluster.sh url "$1" bench)
}
replica_down() { # replica_down DIR
  CPU_PGS=(-pg "pg=$WORK/pg")
  scripts/pgcluster.sh stop "$1"
}
# reads PORT: "reads_primary=N reads_replica=N", from usersd's /metrics.
reads() {
  curl -sf "http://127.0.0.1:$1/metrics" | awk '
    /^usersd_db_reads_total[{]/ { if ($0 ~ /target="replica"/) r += $NF; else if ($0 ~ /target="primary"/) p += $NF }
    END { printf "reads_primary=%d reads_replica=%d\n", p, r }'
}
reads_delta() { # reads_delta BEFORE AFTER
  echo "reads_primary=$(($(field reads_primary "$2") - $(field reads_primary "$1"))) reads_replica=$(($(field reads_replica "$2") - $(field reads_replica "$1")))"
}
# launch_replica_usersd: the second usersd, reads on REPL_URL; returns once
# usersd counts the replica usable (it checks every 100 ms).
launch_replica_usersd() {
  REPL_PORT=$(free_port)
  LAUNCH_TAG=replica LAUNCH_ENV="READ_DATABASE_URLS=$REPL_URL REPLICA_MAX_LAG=1s" launch_usersd "$REPL_PORT" warn off
  REPL_PID=$LAUNCHED_PID
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$REPL_PORT/metrics" | grep -q '^usersd_db_replica_usable{.*} 1$' && return 0
    sleep 0.1
  done
  tail -20 "$WORK/usersd.warn.auth-off.batch-on.replica.log" >&2
  die "usersd never counted the replica usable"
}

if want replica; then
note_load replica
replica_up "$WORK/pgr"
# The primary's shared buffers hold every user already (seeded, then read
# by the phases before); the replica's start empty: read every heap and
# index page once so that both serve from memory.
"$PGBIN/psql" -X -q -h "$WORK/pgr" -p "$(sed -n 4p "$WORK/pgr/data/postmaster.pid")" -U postgres -d bench \
  -c "SELECT count(*) FROM users WHERE email IS NOT NULL" \
  -c "SET enable_seqscan = off; SET enable_bitmapscan = off; SELECT count(*) FROM users WHERE id > '00000000-0000-0000-0000-000000000000'" >/dev/null
launch_replica_usersd
log "replica: usersd on :$REPL_PORT reads from $REPL_URL"
for p in "$PORT" "$REPL_PORT"; do
  warm connect-proto "$p" "$IDS"
  warm rest "$p" "$IDS"
done

# 1. Peak, primary only against the replica, back to back (ABBA).
REPLE="rest-h1:rest:wrk cproto-h2c:connect-proto:closed"
for e in $REPLE; do
  IFS=: read -r entry mode tool <<<"$e"
  c=${PEAKC[$entry]:-$MAXC}; [ "$c" = 0 ] && c=$MAXC
  for round in $(seq "$REPL_ROUNDS"); do
    order="primary replica"
    [ $((round % 2)) = 0 ] && order="replica primary"
    for t in $order; do
      port=$PORT pid=$USERSD_PID
      [ "$t" = replica ] && port=$REPL_PORT pid=$REPL_PID
      m0=$(reads "$REPL_PORT")
      res=$(run_tool "$tool" "$mode" "$port" "$pid" "$c" "$IDS")
      m1=$(reads "$REPL_PORT")
      [ "$t" = replica ] && res="$res $(reads_delta "$m0" "$m1")"
      echo "replica entry=$entry target=$t round=$round tool=$tool conc=$c $res" >>"$RES"
      log "replica: $t, $entry c=$c (round $round): $res"
    done
  done
done
note_rss replica-primary
note_rss replica "$REPL_PID"
stop_pid "$REPL_PID"
REPL_PID=
replica_down "$WORK/pgr"

# 2. Read-after-write: the replica applies each commit REPL_DELAY after the
# primary made it (recovery_min_apply_delay), so a GET right after its
# create reads the replica before the user is there, unless the token
# sends it to the primary. Open loop at QUIET_RATE pairs/s, token and no
# token alternating (ABBA).
replica_up "$WORK/pgr-delay" "$REPL_DELAY"
launch_replica_usersd
warm rest "$REPL_PORT" "$IDS"
for round in $(seq "$REPL_ROUNDS"); do
  order="token none"
  [ $((round % 2)) = 0 ] && order="none token"
  for m in $order; do
    flag=-token=false
    [ "$m" = token ] && flag=-token=true
    out="$RAW/$(date +%H%M%S)-raw-$m.txt"
    m0=$(reads "$REPL_PORT")
    cpu_mark raw
    t0=$(ticks "$REPL_PID")
    timeout $((DUR + 60)) nice -n -5 "$WORK/load" raw -url "http://127.0.0.1:$REPL_PORT" -rate "$QUIET_RATE" -d "${DUR}s" $flag \
      >"$out" 2>"$WORK/load.err" || true
    t1=$(ticks "$REPL_PID") cw=$(cpu_since raw)
    m1=$(reads "$REPL_PORT")
    r=$(jq -r '"pairs=\(.pairs) fresh=\(.fresh) stale=\(.stale) errors=\(.errors) no_token=\(.no_token) p50=\(.p50_ms) p99=\(.p99_ms) create_p50=\(.create_p50_ms) get_p50=\(.get_p50_ms) lag99=\(.lag_p99_ms) ccpu=\(.client_cpu_us)"' "$out" 2>/dev/null) ||
      { cat "$WORK/load.err" >&2; r="pairs=0 errors=1"; }
    echo "raw mode=$m round=$round rate=$QUIET_RATE delay=$REPL_DELAY $r ticks=$((t1 - t0)) $(reads_delta "$m0" "$m1") $cw" >>"$RES"
    log "read-after-write, $m (round $round): $r"
  done
done
stop_pid "$REPL_PID"
REPL_PID=
replica_down "$WORK/pgr-delay"
psqlq -c "TRUNCATE river_job" >/dev/null # the pairs' welcome jobs
fi # phase replica

# =========================== 3. 1,000,000 users ==============================
if want 3; then
note_load 3
seed 100001 1000000
ids_file 1000000 "$WORK/ids1m"
warm connect-proto "$PORT" "$WORK/ids1m"
r=$(run_tool open connect-proto "$PORT" "$USERSD_PID" "$SCALE_RATE" "$WORK/ids1m")
echo "scale entry=users1m target=usersd tool=load rate=$SCALE_RATE $r" >>"$RES"
log "scale 1M users @ $SCALE_RATE rps: $r"

IFS=$'\t' read -r TOKEN _ WALK < <("$WORK/load" pages -url "http://127.0.0.1:$PORT" -pages 1000 -size 50)
echo "list walk pages=1000 seconds=$WALK" >>"$RES"
log "walked 999 pages in $WALK s"
for p in 1 1000; do
  tok=
  [ "$p" = 1000 ] && tok=$TOKEN
  path="/users?page_size=50"
  [ -n "$tok" ] && path="$path&page_token=$tok"
  r=$(run_tool wrk path "$PORT" "$USERSD_PID" 32 "" "$path")
  echo "listpeak entry=page$p target=usersd tool=wrk conc=32 $r" >>"$RES"
  log "ListUsers page $p peak: $r"
  r=$(run_tool open rest-list "$PORT" "$USERSD_PID" 500 "" "-token=$tok")
  echo "listrate entry=page$p target=usersd tool=load rate=500 $r" >>"$RES"
  log "ListUsers page $p @ 500 rps: $r"
done
note_rss list
fi # phase 3

# ==================== feed. The change feed, 100,000 users =====================
# Four measurements of the change feed, on the fast cluster (as phase 4's
# CreateUser rows, which the fourth compares with): one pager's events/s
# over FEED_EVENTS events; watch latency at FEED_RATE changes/s; usersd's
# memory per idle watcher; CreateUser against the release before the feed.
# Every usersd here has AUTH_DISABLED=true, as the main one (see the
# header): the feed needs users:read, which would otherwise need the
# devissuer of the auth phase, and the rows measure the feed, not tokens.
# feed_page ENTRY PROTO ROUND [FLAG...]: one pager reads the whole feed
# from "0".
feed_page() {
  local entry=$1 lproto=$2 round=$3 t0 t1 r out="$RAW/$(date +%H%M%S)-feedpage-$1.txt"
  shift 3
  cpu_mark feedpage
  t0=$(ticks "$USERSD_PID")
  timeout 120 "$WORK/load" feedpage -url "http://127.0.0.1:$PORT" -proto "$lproto" -size 1000 -min "$FEED_EVENTS" "$@" \
    >"$out" 2>"$WORK/load.err" || true
  t1=$(ticks "$USERSD_PID")
  local cw
  cw=$(cpu_since feedpage)
  r=$(jq -r --argjson ticks $((t1 - t0)) '"events=\(.events) pages=\(.pages) bytes=\(.bytes) wire=\(.wire_bytes) seconds=\(.seconds) eps=\(.events_per_s) p50=\(.page_p50_ms) p99=\(.page_p99_ms) ccpu=\(.client_cpu_us_per_event) ticks=\($ticks) errors=0"' "$out" 2>/dev/null) ||
    { cat "$WORK/load.err" >&2; r="events=0 eps=0 errors=1"; }
  echo "feedpage entry=$entry round=$round size=1000 $r $cw" >>"$RES"
  log "feed pager $entry (round $round): $r"
}

# feed_create: CreateUser peak, the usersd of this tree (the main one, or
# the BENCH_FEED_WITH build: target=feed) against the previous release
# (target=prev), back to back
# at each of CREATE_CONCS, the order turned at every step (ABBA), each run
# from an empty welcome backlog (each pays for its own jobs only). Both
# work welcome jobs, whoever queued them: the CPU of each run is that of
# the two processes (ticks of the one measured, ticks_other of the other).
feed_create() {
  local i=0 round e entry tool mode c t order port pid other r o0 o1
  for round in $(seq "$FEED_ROUNDS"); do
    for e in rest-create:wrk:create cproto-create:closed:connect-create; do
      IFS=: read -r entry tool mode <<<"$e"
      for c in $CREATE_CONCS; do
        order="feed prev"
        [ $((i % 2)) = 1 ] && order="prev feed"
        i=$((i + 1))
        for t in $order; do
          port=$WITH_PORT pid=$WITH_PID other=$PREV_PID
          [ "$t" = prev ] && port=$PREV_PORT pid=$PREV_PID other=$WITH_PID
          psqlq -c "TRUNCATE river_job" >/dev/null
          o0=$(ticks "$other")
          r=$(DUR=$FEED_CREATE_DUR run_tool "$tool" "$mode" "$port" "$pid" "$c" "")
          o1=$(ticks "$other")
          echo "feedcreate entry=$entry target=$t round=$round tool=$tool conc=$c $r ticks_other=$((o1 - o0))" >>"$RES"
          log "feed create $entry $t c=$c (round $round): $r"
        done
      done
    done
  done
}

if want feed; then
note_load feed
if want 3; then # back to phase 4's 100,000 users
  psqlq -c "TRUNCATE users, river_job" >/dev/null
  seed 1 100000
fi
# The events are written in SQL (bench/sql/events.sql: one "created" event
# per seeded user, 100 to a transaction): seed.sql inserts users without
# events, and creating FEED_EVENTS users through the API would take most
# of the phase's time.
psqlq -c "TRUNCATE user_events" >/dev/null
t=$(date +%s%3N)
psqlq -v n="$FEED_EVENTS" -v per=100 -f bench/sql/events.sql >/dev/null
log "wrote $FEED_EVENTS events in SQL in $(($(date +%s%3N) - t)) ms"

# 1. One pager, from the oldest event to the end, page_size 1000; twice
# each, ABBA. connect-go's client accepts gzip unless told not to, and
# usersd compresses every response of 1 KiB or more: a page of 1,000 is
# measured both ways.
feed_page cproto-h2c connect-proto 1
feed_page cproto-h2c-identity connect-proto 1 -gzip=false
feed_page rest-h1 rest 1
feed_page rest-h1 rest 2
feed_page cproto-h2c-identity connect-proto 2 -gzip=false
feed_page cproto-h2c connect-proto 2

# 2. Watch latency: FEED_WATCHERS Connect proto and SSE watchers on the
# main usersd (same process as the writes: its hub polls at once after
# each) and on a second usersd of the same binary on the same database
# (it learns of the writes by polling, every 200 ms).
FEEDB_PORT=$(free_port)
LAUNCH_TAG=feed-other launch_usersd "$FEEDB_PORT" warn off
FEEDB_PID=$LAUNCHED_PID
out="$RAW/$(date +%H%M%S)-feedwatch-$FEED_RATE.txt"
cpu_mark feedwatch
timeout $((FEED_WATCH_DUR + 60)) nice -n -5 "$WORK/load" feedwatch -write "http://127.0.0.1:$PORT" \
  -watch "same=http://127.0.0.1:$PORT" -watch "other=http://127.0.0.1:$FEEDB_PORT" \
  -streams "$FEED_WATCHERS" -sse "$FEED_WATCHERS" -rate "$FEED_RATE" -d "${FEED_WATCH_DUR}s" -ids "$IDS" \
  >"$out" 2>"$WORK/load.err" || true
cw=$(cpu_since feedwatch)
jq -r --arg cw "$cw" '. as $r | .groups[] | "feedwatch target=\(.target) kind=\(.kind) watchers=\(.watchers) rate=\($r.rate) seconds=\($r.seconds) writes=\($r.writes) werrors=\($r.write_errors) wp50=\($r.write_p50_ms) wp99=\($r.write_p99_ms) lag99=\($r.lag_p99_ms) expected=\(.expected) samples=\(.samples) missing=\(.missing) early=\(.early) errors=\(.errors + $r.write_errors) p50=\(.p50_ms) p99=\(.p99_ms) max=\(.max_ms) \($cw)"' \
  "$out" >>"$RES" 2>/dev/null || { cat "$WORK/load.err" >&2; echo "feedwatch target=same kind=cproto errors=1" >>"$RES"; }
grep '^feedwatch' "$RES" | while read -r l; do log "$l"; done
stop_pid "$FEEDB_PID"
FEEDB_PID=

# 3. Memory per idle watcher: a fresh usersd (pprof on, to force its GC
# before each reading), half the watchers Connect proto streams over h2c
# (at most 200 to a connection: usersd allows 250), half SSE, each on its
# own HTTP/1.1 connection. Its VmHWM is listed but left out of the peak
# RSS row, which is about serving: this one has its own row.
IDLE_PORT=$(free_port)
IDLE_PPROF=$(free_port)
LAUNCH_TAG=feed-idle launch_usersd "$IDLE_PORT" warn off "127.0.0.1:$IDLE_PPROF"
IDLE_PID=$LAUNCHED_PID
half=$((FEED_IDLE / 2))
conns=$(((half + 199) / 200))
[ "$conns" -lt "$H2CONNS" ] && conns=$H2CONNS
out="$RAW/$(date +%H%M%S)-idlewatch-$FEED_IDLE.txt"
cpu_mark idlewatch
timeout 120 "$WORK/load" idlewatch -url "http://127.0.0.1:$IDLE_PORT" -pid "$IDLE_PID" -pprof "http://127.0.0.1:$IDLE_PPROF" \
  -streams "$half" -conns "$conns" -sse $((FEED_IDLE - half)) >"$out" 2>"$WORK/load.err" || true
r=$(jq -r '"streams=\(.streams) conns=\(.conns) sse=\(.sse) alive=\(.alive) base_kb=\(.base.rss_kb) streams_kb=\(.points[0].rss_kb) all_kb=\(.points[1].rss_kb) base_go=\(.base.heap_inuse + .base.stack_inuse) streams_go=\(.points[0].heap_inuse + .points[0].stack_inuse) all_go=\(.points[1].heap_inuse + .points[1].stack_inuse) errors=\(if .alive == .streams + .sse then 0 else 1 end)"' "$out" 2>/dev/null) ||
  { cat "$WORK/load.err" >&2; r="errors=1"; }
echo "feedmem $r $(cpu_since idlewatch)" >>"$RES"
log "idle watchers: $r"
echo "rss phase=feed-idle hwm_kb=$(hwm "$IDLE_PID")" >>"$RES"
stop_pid "$IDLE_PID"
IDLE_PID=

# 4. CreateUser against the previous release. Its migrations stop before
# the feed's, and it would refuse a schema newer than it knows (tern:
# "current version 5 is outside the valid versions"): it migrates a
# database of its own (MIGRATE_DATABASE_URL) and serves this one, whose
# user_events table it ignores. A BENCH_FEED_WITH build does the same (this
# tree's migrations may be past its own).
scripts/pgcluster.sh createdb "$WORK/pg" bench_prev_schema
PREV_PORT=$(free_port)
LAUNCH_BIN=$WORK/usersd-prev LAUNCH_TAG=prev LAUNCH_ENV="MIGRATE_DATABASE_URL=$(scripts/pgcluster.sh url "$WORK/pg" bench_prev_schema)" \
  launch_usersd "$PREV_PORT" warn off
PREV_PID=$LAUNCHED_PID
WITH_PORT=$PORT WITH_PID=$USERSD_PID
if [ -n "$WITH" ]; then
  scripts/pgcluster.sh createdb "$WORK/pg" bench_with_schema
  WITH_PORT=$(free_port)
  LAUNCH_BIN=$WORK/usersd-with LAUNCH_TAG=with LAUNCH_ENV="MIGRATE_DATABASE_URL=$(scripts/pgcluster.sh url "$WORK/pg" bench_with_schema)" \
    launch_usersd "$WITH_PORT" warn off
  WITH_PID=$LAUNCHED_PID
fi
warm rest-create "$WITH_PORT" "" "$QUIET_RATE"
warm rest-create "$PREV_PORT" "" "$QUIET_RATE"
feed_create
note_rss feed
echo "rss phase=feed-prev hwm_kb=$(hwm "$PREV_PID")" >>"$RES"
stop_pid "$PREV_PID"
PREV_PID=
if [ -n "$WITH" ]; then
  stop_pid "$WITH_PID"
  WITH_PID=
fi
# Phase 4 starts from its own users; the feed's events would only add to
# the index its creates write to.
psqlq -c "TRUNCATE user_events, river_job" >/dev/null
fi # phase feed

# =========================== 4. CreateUser, 100,000 users =====================
# create_phase off|on (PostgreSQL's fsync): CreateUser on REST and Connect
# proto, usersd with group commit (the main usersd) against a second usersd
# with CREATE_BATCH=off, started here, and against pgbench's single-create
# transaction. The welcome backlog is emptied first, so each fsync setting
# starts alike; the latency rows at QUIET_RATE come first, while the server
# is quiet, then the peak sweeps (REST, Connect proto), then pgbench. Welcome
# jobs are worked by the River of both usersd in the background, as in
# production, during the usersd runs and the pgbench runs alike; each of
# the three groups starts once the backlog of the one before is worked off
# (drain_jobs), so that none runs on another's backlog.
# drain_jobs ENTRY: waits until River has worked off the welcome backlog
# (at most BENCH_DRAIN seconds), and records what was left.
drain_jobs() {
  local t0 n
  t0=$(date +%s)
  while :; do
    n=$(psqlq -At -c "SELECT count(*) FROM river_job WHERE state IN ('available', 'running', 'retryable')")
    [ "$n" -le 200 ] && break
    [ $(($(date +%s) - t0)) -ge "$DRAIN" ] && break
    sleep 1
  done
  echo "drain entry=$1 waited_s=$(($(date +%s) - t0)) backlog=$n $REC_EXTRA" >>"$RES"
  log "welcome backlog before $1: $n after $(($(date +%s) - t0)) s"
}

# clear_jobs, before each CreateUser run, and jobs_done ("jobs=N", the
# welcome jobs River completed since), after it: every run's PostgreSQL
# CPU is then that of its own creates and of the jobs they queued, none
# left over from the run before (a c32 run leaves thousands, and pgbench's
# next run would pay for them while its 32 clients connect); the jobs
# worked per create say how much of that work fell inside the window.
clear_jobs() { psqlq -c "TRUNCATE river_job" >/dev/null; }
jobs_done() { echo "jobs=$(psqlq -At -c "SELECT count(*) FROM river_job WHERE state = 'completed'")"; }

create_phase() {
  local fsync=$1 round order b e entry lproto port pid target r c
  REC_EXTRA="fsync=$fsync"
  psqlq -c "TRUNCATE river_job" >/dev/null
  launch_usersd "$OFF_PORT" warn off "" off
  OFF_PID=$LAUNCHED_PID
  # A light warm-up: its welcome jobs must not still be worked while the
  # quiet rows run.
  warm rest-create "$PORT" "" "$QUIET_RATE"
  warm rest-create "$OFF_PORT" "" "$QUIET_RATE"
  for round in $(seq "$QUIET_ROUNDS"); do
    order="on off"
    [ $((round % 2)) = 0 ] && order="off on" # ABBA
    for e in rest-create:rest-create cproto-create:connect-create; do
      IFS=: read -r entry lproto <<<"$e"
      for b in $order; do
        port=$PORT pid=$USERSD_PID target=usersd
        [ "$b" = off ] && port=$OFF_PORT pid=$OFF_PID target=nobatch
        r=$(DUR=$QUIET_DUR run_tool open "$lproto" "$port" "$pid" "$QUIET_RATE" "")
        echo "quiet entry=$entry target=$target tool=load rate=$QUIET_RATE round=$round $REC_EXTRA $r" >>"$RES"
        log "quiet $entry $target @ $QUIET_RATE/s (fsync $fsync, round $round): $r"
      done
    done
  done
  drain_jobs rest-create
  SWEEP_BEFORE=clear_jobs SWEEP_AFTER=jobs_done SWEEP_CONCS=$CREATE_CONCS \
    sweep create rest-create wrk create "" "usersd:$PORT:$USERSD_PID" "nobatch:$OFF_PORT:$OFF_PID"
  CPEAKC=${BESTC[usersd]}
  # How fast River works the welcome backlog the sweep left.
  local q="SELECT count(*) FILTER (WHERE state = 'completed'), count(*) FILTER (WHERE state IN ('available', 'running', 'retryable')) FROM river_job"
  local done0 backlog0 done1 backlog1
  # Nothing but River runs meanwhile, so PostgreSQL's CPU over it, per job,
  # is what a welcome job costs it: the CreateUser rows take that out of
  # PostgreSQL's CPU per create, whose runs work different shares of their
  # jobs within the window.
  IFS='|' read -r done0 backlog0 < <(psqlq -At -c "$q")
  cpu_mark river
  sleep "$DUR"
  local cw
  cw=$(cpu_since river)
  IFS='|' read -r done1 backlog1 < <(psqlq -At -c "$q")
  echo "river completed_per_s=$(awk -v a="$done0" -v b="$done1" -v d="$DUR" 'BEGIN {printf "%.0f", (b - a) / d}') jobs=$((done1 - done0)) backlog=$backlog1 workers=20 $REC_EXTRA $cw" >>"$RES"
  log "river (fsync $fsync): $((done1 - done0)) welcome jobs completed in $DUR s; backlog $backlog1"
  drain_jobs cproto-create
  SWEEP_BEFORE=clear_jobs SWEEP_AFTER=jobs_done SWEEP_CONCS=$CREATE_CONCS \
    sweep create cproto-create closed connect-create "" "usersd:$PORT:$USERSD_PID" "nobatch:$OFF_PORT:$OFF_PID"
  drain_jobs pgbench
  for c in $PG_CONCS; do
    clear_jobs
    PGBENCH_AFTER=jobs_done pgbench_run create bench/sql/create.pgbench "$c"
  done
  note_rss "create-fsync-$fsync"
  note_rss "create-fsync-$fsync-nobatch" "$OFF_PID"
  stop_pid "$OFF_PID"
  OFF_PID=
  REC_EXTRA=
}

if want 4 || want 4sync; then
note_load 4
psqlq -c "TRUNCATE users, river_job" >/dev/null
seed 1 100000
fi
if want 4; then
create_phase off
if [ "$PROFILE" = 1 ]; then
  c=${CPEAKC:-32}
  [ "$c" = 0 ] && c=32
  profile createuser usersd "$c" rest-create ""
fi
fi # phase 4

# ================ 4sync. CreateUser again, with fsync on ======================
if want 4sync; then
note_load 4sync
if want 4; then # back to the same 100,000 users
  psqlq -c "TRUNCATE users, river_job" >/dev/null
  seed 1 100000
fi
stop_usersd
log "restarting PostgreSQL with fsync, synchronous_commit and full_page_writes on"
scripts/pgcluster.sh stop "$WORK/pg"
printf 'fsync = on\nsynchronous_commit = on\nfull_page_writes = on\n' >>"$WORK/pg/data/postgresql.conf"
scripts/pgcluster.sh start "$WORK/pg"
PGPORT=$(sed -n 4p "$WORK/pg/data/postmaster.pid")
[ "$(psqlq -At -c "SELECT current_setting('fsync') || current_setting('synchronous_commit') || current_setting('full_page_writes')")" = ononon ] ||
  die "PostgreSQL did not come back with fsync, synchronous_commit and full_page_writes on"
echo "pgfsync fs=$(df --output=fstype "$WORK/pg/data" | tail -n 1)" >>"$RES"
start_usersd warn
create_phase on
fi # phase 4sync

stop_usersd
echo "rss hwm_kb=$HWM_KB" >>"$RES"
echo "meta quietdur=$QUIET_DUR createconcs=${CREATE_CONCS// /,} pg=$PGVERSION pgfs=$(df --output=fstype "$WORK/pg/data" | tail -n 1) quietrounds=$QUIET_ROUNDS psecs=$PSECS cpus=$(nproc) dur=$DUR concs=${CONCS// /,} pgconcs=${PG_CONCS// /,} authrounds=$AUTH_ROUNDS replicarounds=$REPL_ROUNDS feedprev=${PREV:-none} feedwith=${WITH:-tree} feedrounds=$FEED_ROUNDS feeddur=$FEED_CREATE_DUR version=$(git describe --always --dirty 2>/dev/null || echo dev) seconds=$(($(date +%s) - T_START)) clk_tck=$(getconf CLK_TCK) loadavg_start=$LOADAVG0 loadavg_end=$(awk '{print $1 "/" $2 "/" $3}' /proc/loadavg)" >>"$RES"

go run ./bench/report "$RES" | tee "$OUT/report.txt"
if [ "$PROFILE" = 1 ] && [ -f "$OUT/getuser-cpu-top.txt" ]; then
  echo
  echo "GetUser, Connect proto: CPU profile of usersd ($OUT/getuser-cpu.pprof), flat:"
  sed -n '1,30p' "$OUT/getuser-cpu-top.txt"
  echo
  echo "GetUser, Connect proto: allocations of usersd ($OUT/getuser-allocs.pprof), alloc_space:"
  sed -n '1,25p' "$OUT/getuser-allocs-top.txt"
  echo
  echo "(the bare handler's: $OUT/getuser-bare-*; other entry points: $OUT/getuser-<entry>[-bare]-*;"
  echo " cumulative views: $OUT/*-cpu-cum.txt; CreateUser REST: $OUT/createuser-*)"
fi
log "done in $(($(date +%s) - T_START)) s"
