#!/usr/bin/env bash
# test-cluster.sh runs the multi-replica suite (test/cluster): three usersd
# replicas (bin/usersd, `make build`) behind HAProxy, querying PostgreSQL
# through PgBouncer, with the configurations in deploy/haproxy and
# deploy/pgbouncer. The test starts HAProxy and PgBouncer itself, on free
# loopback ports, and stops them afterwards. `make test-cluster` runs it after
# `make build`.
#
# Without TEST_DATABASE_URL it runs itself under scripts/with-testdb.sh (a
# throwaway cluster; PgBouncer reaches it through its unix socket). It needs
# Debian's haproxy (2.6) and pgbouncer (1.18): as root it installs them when
# they are missing, and otherwise fails: a cluster test that cannot run is not
# a passing one. PgBouncer refuses to run as root; as root the test runs it as
# the postgres OS user (which Debian's postgresql package creates).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
GO=${GO:-go}

if [ -z "${TEST_DATABASE_URL:-}" ]; then
  exec "$here/with-testdb.sh" "$0" "$@"
fi

die() { echo "test-cluster: $*" >&2; exit 1; }

[ -x bin/usersd ] || [ -n "${USERSD_BIN:-}" ] || die "bin/usersd is missing: run make build (make test-cluster does)"

# Debian installs both in /usr/sbin, which is not on every user's PATH.
has() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ]; }
missing=()
has haproxy || missing+=(haproxy)
has pgbouncer || missing+=(pgbouncer)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test-cluster: ${missing[*]} not found; installing Debian's ${missing[*]} package(s)" >&2
    # The packages' own services are not wanted: the test runs its own
    # processes. policy-rc.d keeps apt from starting them.
    policy=/usr/sbin/policy-rc.d
    created_policy=
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1
    fi
    rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
    [ -z "$created_policy" ] || rm -f "$policy"
    [ "$rc" = 0 ] || die "could not install ${missing[*]} with apt-get"
  fi
  has haproxy && has pgbouncer ||
    die "the cluster test needs haproxy and pgbouncer (as root: apt-get install haproxy pgbouncer); NOT skipping it"
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  die "PgBouncer refuses to run as root and there is no postgres OS user to run it as (apt-get install postgresql creates it)"
fi

exec $GO test -count=1 -timeout 6m -tags cluster -v ./test/cluster/... "$@"
