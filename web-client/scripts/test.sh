#!/usr/bin/env bash
# test.sh runs the web client's Node and browser tests against a live usersd.
#
# It needs TEST_DATABASE_URL, a PostgreSQL superuser URL (`make test`
# provides one; by hand: scripts/with-testdb.sh web-client/scripts/test.sh
# from the repository root, after `make build web`). It creates a database
# of its own, starts ../bin/usersd on a free 127.0.0.1 port with the built
# page (dist/) and a second origin allowed by CORS, runs every test file
# with node's test runner, and always stops usersd and drops the database.
#
# Environment: CHROMIUM (default /usr/bin/chromium, installed with apt-get
# when missing), USERSD_BIN (default ../bin/usersd), KEEP_LOG=1 prints the
# usersd log even when the tests pass.
set -euo pipefail
web=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$web/.." && pwd)
cd "$web"

log() { echo "web-client: $*" >&2; }
die() { log "$*"; exit 1; }

[ -n "${TEST_DATABASE_URL:-}" ] ||
  die "TEST_DATABASE_URL is not set: run 'make test', or scripts/with-testdb.sh web-client/scripts/test.sh from the repository root"
usersd=${USERSD_BIN:-$repo/bin/usersd}
[ -x "$usersd" ] || die "$usersd is missing: run 'make build' first"
command -v psql >/dev/null || die "psql is missing: apt-get install postgresql-client"

# Dependencies, when node_modules is missing or older than the lock file.
stamp=node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ]; then
  log "installing dependencies (npm ci)"
  npm ci --no-audit --no-fund >&2
  touch "$stamp"
fi

# The browser: Debian's Chromium (playwright-core cannot download one here).
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  log "installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq chromium >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; } ||
    die "could not install chromium"
fi

# Types first (tsc 7 takes a second), then the page, so that the tests never
# see a stale one.
npm run --silent typecheck >&2
npm run --silent build >&2

# Two free ports: usersd's, and the second origin the CORS test serves the page from.
read -r port cors_port < <(node -e '
  const net = require("node:net");
  const a = net.createServer().listen(0, "127.0.0.1", () => {
    const b = net.createServer().listen(0, "127.0.0.1", () => {
      console.log(a.address().port, b.address().port); a.close(); b.close();
    });
  });')

# A database of our own, named after a random suffix.
db="usersd_web_$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')"
re='^([a-zA-Z][a-zA-Z0-9+.-]*://[^/?]*)(/[^?]*)?(\?.*)?$'
[[ "$TEST_DATABASE_URL" =~ $re ]] || die "cannot parse TEST_DATABASE_URL"
db_url="${BASH_REMATCH[1]}/$db${BASH_REMATCH[3]}"

results=$web/test-results
rm -rf "$results"
mkdir -p "$results"
usersd_log=$results/usersd.log
pid=

cleanup() {
  local rc=$?
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  psql "$TEST_DATABASE_URL" -qAtX -v ON_ERROR_STOP=1 -c "drop database if exists $db with (force)" >/dev/null ||
    log "could not drop database $db"
  if [ "$rc" != 0 ] || [ -n "${KEEP_LOG:-}" ]; then
    log "usersd log ($usersd_log), last 40 lines:"
    tail -n 40 "$usersd_log" >&2 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

psql "$TEST_DATABASE_URL" -qAtX -v ON_ERROR_STOP=1 -c "create database $db" >/dev/null
log "database $db, usersd on 127.0.0.1:$port, CORS origin http://127.0.0.1:$cors_port"

DATABASE_URL=$db_url \
BIND=127.0.0.1:$port \
WEB_DIR=$web/dist \
RIVER_WORKERS=0 \
CORS_ALLOWED_ORIGINS=http://127.0.0.1:$cors_port \
LOG_FORMAT=text \
  "$usersd" >"$usersd_log" 2>&1 &
pid=$!

url=http://127.0.0.1:$port
for i in $(seq 300); do
  kill -0 "$pid" 2>/dev/null || die "usersd exited during start-up"
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/healthz" 2>/dev/null || true)" = 200 ] && break
  [ "$i" = 300 ] && die "usersd did not turn healthy within 30 s"
  sleep 0.1
done

export USERSD_URL=$url CORS_ORIGIN_PORT=$cors_port RESULTS_DIR=$results
node --import tsx --test --test-reporter=spec \
  test/node/*.test.ts test/browser/*.test.ts
