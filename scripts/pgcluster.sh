#!/usr/bin/env bash
# pgcluster.sh manages a project-local PostgreSQL cluster from the installed
# server binaries. Used by `make run` (persistent .devdb/), `make test`
# (throwaway cluster) and the fault tests (which stop and restart it).
#
#   pgcluster.sh init  DIR [--fast]   create the cluster (--fast: fsync off, for tests)
#   pgcluster.sh start DIR [PORT]     start it: unix socket in DIR, plus 127.0.0.1:PORT when given
#   pgcluster.sh stop  DIR [MODE]     stop it (MODE: smart | fast | immediate; default fast)
#   pgcluster.sh url   DIR DBNAME     print a connection URL over the unix socket
#   pgcluster.sh createdb DIR DBNAME  create DBNAME unless it exists
#   pgcluster.sh replica PRIMARY DIR [DELAY]
#                                     create DIR as a streaming replica (hot standby) of
#                                     the running cluster in PRIMARY (pg_basebackup -R),
#                                     replaying DELAY behind it (recovery_min_apply_delay,
#                                     e.g. 300ms; default 0); start it with "start DIR"
set -euo pipefail

die() { echo "pgcluster: $*" >&2; exit 1; }

bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$d" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "pgcluster: PostgreSQL server binaries not found; installing Debian's postgresql package" >&2
    # Only the binaries: no system cluster on port 5432.
    mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  fi
  [ -n "$d" ] || die "PostgreSQL server binaries not found: install Debian's 'postgresql' package (apt-get install postgresql) or set DATABASE_URL"
  echo "$d"
}

# initdb and postgres refuse to run as root: run them as the postgres OS user.
as_owner() {
  # From /: the caller's directory may be closed to the postgres user.
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: pgcluster.sh init|start|stop|url|createdb|replica DIR ..."
mkdir -p "$dir"
dir=$(cd "$dir" && pwd -P) # the real path: .devdb may be a link
bin=$(bindir)

case "$cmd" in
init)
  [ -f "$dir/data/PG_VERSION" ] && exit 0
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
    runuser -u postgres -- test -x "$dir" ||
      die "the postgres OS user cannot reach $dir (check the permissions of its parent directories)"
  fi
  as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  if [ "${3:-}" = "--fast" ]; then
    # Throwaway clusters for tests: durability buys nothing there.
    printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n' >>"$dir/data/postgresql.conf"
  fi
  printf 'max_connections = 200\nunix_socket_directories = %s\n' "'$dir'" >>"$dir/data/postgresql.conf"
  ;;
start)
  port=${3:-}
  if [ -n "$port" ]; then opts="-c listen_addresses=127.0.0.1 -p $port"; else opts="-c listen_addresses="; fi
  as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 && exit 0
  # setsid: Ctrl-C on `make run` stops usersd, not the cluster.
  as_owner setsid "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 -o "$opts" start >/dev/null ||
    { tail -n 20 "$dir/postgres.log" >&2; die "postgres did not start (log: $dir/postgres.log)"; }
  ;;
stop)
  as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 || exit 0
  as_owner "$bin/pg_ctl" -D "$dir/data" -m "${3:-fast}" -w -t 60 stop >/dev/null
  ;;
url)
  port=$(sed -n 's/^port *= *\([0-9]*\).*/\1/p' "$dir/data/postgresql.conf" | tail -n 1)
  pidport=$(sed -n 4p "$dir/data/postmaster.pid" 2>/dev/null || true)
  echo "postgres://postgres@/${3:?dbname}?host=$dir&port=${pidport:-${port:-5432}}&sslmode=disable"
  ;;
createdb)
  port=$(sed -n 4p "$dir/data/postmaster.pid")
  exists=$("$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -tAc "select 1 from pg_database where datname = '${3:?dbname}'")
  [ "$exists" = 1 ] || "$bin/createdb" -h "$dir" -p "$port" -U postgres "$3"
  ;;
replica)
  dst=$(mkdir -p "${3:?usage: pgcluster.sh replica PRIMARY DIR [DELAY]}" && cd "$3" && pwd -P)
  [ -f "$dst/data/PG_VERSION" ] && exit 0
  port=$(sed -n 4p "$dir/data/postmaster.pid")
  [ "$(id -u)" = 0 ] && chown postgres: "$dst"
  as_owner "$bin/pg_basebackup" -h "$dir" -p "$port" -U postgres -D "$dst/data" -R -X stream -c fast >"$dst/basebackup.log" 2>&1 ||
    { cat "$dst/basebackup.log" >&2; die "pg_basebackup failed"; }
  # The copied settings name the primary's socket directory: the last line wins.
  printf 'unix_socket_directories = %s\nrecovery_min_apply_delay = %s\n' "'$dst'" "'${4:-0}'" >>"$dst/data/postgresql.conf"
  ;;
*) die "unknown command $cmd" ;;
esac
