#!/usr/bin/env bash
# test.sh runs the web client's Node and browser tests against a live usersd.
#
# It needs TEST_DATABASE_URL, a PostgreSQL superuser URL (`make test`
# provides one; by hand: scripts/with-testdb.sh web-client/scripts/test.sh
# from the repository root, after `make build web`). It creates a database
# of its own, builds and starts the development OpenID issuer
# (cmd/devissuer, its key in test-results/) and ../bin/usersd on free
# 127.0.0.1 ports, usersd with the built page (dist/), a second origin
# allowed by CORS and authentication against that issuer (rate limits off:
# the tests fire many calls from one address; webhooks may reach loopback,
# where the webhook test listens), mints an admin token and a webhooks:admin
# token for the tests, runs every test file with node's test runner, and
# always stops usersd and the issuer and drops the database.
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
command -v go >/dev/null || die "go is missing: it builds the development issuer (cmd/devissuer)"

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

# The development issuer, built every time (Go's cache makes that quick).
devissuer=$repo/bin/devissuer
(cd "$repo" && go build -o "$devissuer" ./cmd/devissuer) || die "could not build cmd/devissuer"

# Three free ports: usersd's, the second origin the CORS test serves the
# page from, and the issuer's.
read -r port cors_port issuer_port < <(node -e '
  const net = require("node:net");
  const servers = [0, 1, 2].map(() => net.createServer());
  let ready = 0;
  for (const s of servers) s.listen(0, "127.0.0.1", () => {
    if (++ready < servers.length) return;
    console.log(servers.map((t) => t.address().port).join(" "));
    for (const t of servers) t.close();
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
issuer_log=$results/devissuer.log
issuer_key=$results/devissuer-key.pem
pid=
issuer_pid=

stop() { # stop PID: SIGTERM, then SIGKILL after 5 s
  local p=$1
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  stop "$pid"
  stop "$issuer_pid"
  psql "$TEST_DATABASE_URL" -qAtX -v ON_ERROR_STOP=1 -c "drop database if exists $db with (force)" >/dev/null ||
    log "could not drop database $db"
  if [ "$rc" != 0 ] || [ -n "${KEEP_LOG:-}" ]; then
    log "usersd log ($usersd_log), last 40 lines:"
    tail -n 40 "$usersd_log" >&2 || true
    log "devissuer log ($issuer_log), last 10 lines:"
    tail -n 10 "$issuer_log" >&2 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

psql "$TEST_DATABASE_URL" -qAtX -v ON_ERROR_STOP=1 -c "create database $db" >/dev/null
issuer_addr=127.0.0.1:$issuer_port
issuer_url=http://$issuer_addr
log "database $db, usersd on 127.0.0.1:$port, CORS origin http://127.0.0.1:$cors_port, issuer $issuer_url"

"$devissuer" serve -addr "$issuer_addr" -audience usersd -key "$issuer_key" >"$issuer_log" 2>&1 &
issuer_pid=$!
for i in $(seq 100); do
  kill -0 "$issuer_pid" 2>/dev/null || die "the development issuer exited during start-up"
  curl -sf -o /dev/null "$issuer_url/.well-known/openid-configuration" && break
  [ "$i" = 100 ] && die "the development issuer did not answer within 10 s"
  sleep 0.1
done

# WEBHOOK_ALLOW_PRIVATE=true on purpose: the webhook test's receiver
# listens on 127.0.0.1, which usersd otherwise refuses (as it must in
# production). Workers on (few: the machine is shared), as webhook
# deliveries are jobs; the welcome mails go to the development mailer,
# which sends nothing.
DATABASE_URL=$db_url \
BIND=127.0.0.1:$port \
WEB_DIR=$web/dist \
RIVER_WORKERS=2 \
WEBHOOK_ALLOW_PRIVATE=true \
CORS_ALLOWED_ORIGINS=http://127.0.0.1:$cors_port \
AUTH_ISSUER=$issuer_url \
AUTH_AUDIENCE=usersd \
RATE_LIMIT_RPS=0 \
RATE_LIMIT_IP_RPS=0 \
LOG_FORMAT=text \
  "$usersd" >"$usersd_log" 2>&1 &
pid=$!

# A token with both scopes for the tests (the same key file as the issuer's).
token=$("$devissuer" token -addr "$issuer_addr" -audience usersd -key "$issuer_key" \
  -scope "users:read users:write" -sub web-client-tests-admin)
# And one that may manage webhooks, and nothing else.
webhooks_token=$("$devissuer" token -addr "$issuer_addr" -audience usersd -key "$issuer_key" \
  -scope "webhooks:admin" -sub web-client-tests-webhooks)

# Ready means healthy and checking tokens (the issuer's keys are loaded).
url=http://127.0.0.1:$port
for i in $(seq 300); do
  kill -0 "$pid" 2>/dev/null || die "usersd exited during start-up"
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/healthz" 2>/dev/null || true)" = 200 ] &&
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
      "$url/users?page_size=1" 2>/dev/null || true)" = 200 ] && break
  [ "$i" = 300 ] && die "usersd did not turn healthy (and accept a token) within 30 s"
  sleep 0.1
done

export USERSD_URL=$url CORS_ORIGIN_PORT=$cors_port RESULTS_DIR=$results USERSD_TOKEN=$token \
  USERSD_WEBHOOKS_TOKEN=$webhooks_token \
  ISSUER_URL=$issuer_url ISSUER_ADDR=$issuer_addr ISSUER_KEY=$issuer_key DEVISSUER_BIN=$devissuer
node --import tsx --test --test-reporter=spec \
  test/node/*.test.ts test/browser/*.test.ts
