#!/usr/bin/env bash
# with-testdb.sh CMD... runs CMD with TEST_DATABASE_URL pointing at a real
# PostgreSQL. When TEST_DATABASE_URL is already set it is used as is;
# otherwise a throwaway cluster (fsync off) is created in a temp directory
# and stopped and removed afterwards, also when CMD fails or the run is
# interrupted.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ -n "${TEST_DATABASE_URL:-}" ]; then
  exec "$@"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/usersd-test.XXXXXX")
chmod 755 "$tmp"
cleanup() {
  "$here/pgcluster.sh" stop "$tmp" immediate >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

"$here/pgcluster.sh" init "$tmp" --fast
"$here/pgcluster.sh" start "$tmp"
TEST_DATABASE_URL=$("$here/pgcluster.sh" url "$tmp" postgres)
export TEST_DATABASE_URL
# Tests that control a cluster of their own (the fault tests) need this too.
export USERSD_PGCLUSTER="$here/pgcluster.sh"
echo "with-testdb: throwaway PostgreSQL at $tmp" >&2
# In the background so that a signal to this script is handled at once
# (bash runs traps only between foreground commands): pass it on, wait for
# the command to finish, then clean up.
# (bash starts background commands with SIGINT ignored; undo that, so
# Ctrl-C reaches the tests as usual.)
(trap - INT; exec "$@") &
child=$!
trap 'kill -INT $child 2>/dev/null; wait $child; exit 130' INT
trap 'kill -TERM $child 2>/dev/null; wait $child; exit 143' TERM
wait $child
