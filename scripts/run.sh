#!/usr/bin/env bash
# run.sh builds and runs usersd (make run). Without DATABASE_URL it first
# creates (once) and starts a project-local PostgreSQL in .devdb/ on
# DEVDB_PORT (default 54329), which keeps its data across runs and keeps
# running after usersd stops: `make devdb-stop` stops it, `make devdb-reset`
# wipes it. Without AUTH_ISSUER (and without AUTH_DISABLED=true) it also
# starts the development OpenID issuer (cmd/devissuer) on DEV_ISSUER_ADDR,
# default 127.0.0.1:8001, and points usersd at it; the issuer stops when
# usersd does. usersd listens on BIND, default 0.0.0.0:8000.
#
# Every port is checked before anything starts; once usersd is ready the
# script prints the API's address, the page's URL and the command that gets
# a token. With arguments (run.sh version) it only builds and runs
# usersd with them.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "run.sh: $*" >&2; }

# BIN: where the binaries go (bin/; the tests build elsewhere). The same
# version stamp as make build and the image.
BIN=${BIN:-bin}
mkdir -p "$BIN"
build() { go build -ldflags "-X main.version=$(scripts/version.sh)" -o "$BIN/usersd" ./cmd/usersd; }
if [ $# -gt 0 ]; then
  build
  exec "$BIN/usersd" "$@"
fi

bind=${BIND:-0.0.0.0:8000}
issuer_addr=${DEV_ISSUER_ADDR:-127.0.0.1:8001}
devdb_port=${DEVDB_PORT:-54329}
start_issuer=false
[ -z "${AUTH_ISSUER:-}" ] && [ "${AUTH_DISABLED:-}" != true ] && start_issuer=true

# busy HOST:PORT: something accepts connections there.
busy() {
  local host=${1%:*} port=${1##*:}
  case $host in "" | 0.0.0.0 | "[::]" | "::") host=127.0.0.1 ;; esac
  host=${host#[}; host=${host%]}
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}
check_port() { # ADDR VARIABLE EXAMPLE
  if busy "$1"; then
    log "port ${1##*:} is in use (by another make run?): stop what uses it, or move usersd with $2=$3"
    exit 1
  fi
}
check_port "$bind" BIND 127.0.0.1:8080
$start_issuer && check_port "$issuer_addr" DEV_ISSUER_ADDR 127.0.0.1:8011

if [ -z "${DATABASE_URL:-}" ]; then
  dir=.devdb
  # As root, the server runs as the postgres OS user, who may not be able to
  # reach a checkout under a private directory (such as /root): keep the
  # data under /var/lib then, with .devdb pointing at it.
  if [ "$(id -u)" = 0 ] && [ ! -e "$dir" ] && id postgres >/dev/null 2>&1 &&
    ! runuser -u postgres -- test -x "$PWD"; then
    real=/var/lib/usersd-devdb/$(printf %s "$PWD" | md5sum | cut -c1-12)
    mkdir -p "$real"
    chmod 755 /var/lib/usersd-devdb
    ln -s "$real" "$dir"
  fi
  # A PostgreSQL of ours already running holds the port itself.
  if ! [ -f "$dir/data/postmaster.pid" ]; then
    check_port "127.0.0.1:$devdb_port" DEVDB_PORT 54339
  fi
  scripts/pgcluster.sh init "$dir"
  scripts/pgcluster.sh start "$dir" "$devdb_port"
  scripts/pgcluster.sh createdb "$dir" usersd
  DATABASE_URL=$(scripts/pgcluster.sh url "$dir" usersd)
  export DATABASE_URL
  stopped_note="PostgreSQL in .devdb keeps running (and keeps your data): 'make devdb-stop' stops it, 'make devdb-reset' also wipes it"
fi

# For trying webhooks against a receiver on this machine (README, Try it):
# usersd alone refuses loopback and private addresses.
export WEBHOOK_ALLOW_PRIVATE=${WEBHOOK_ALLOW_PRIVATE:-true}

if [ -z "${WEB_DIR:-}" ] && [ -f web-client/dist/index.html ]; then
  export WEB_DIR=web-client/dist
fi

build
token_cmd=""
if $start_issuer; then
  go build -o "$BIN/devissuer" ./cmd/devissuer
  "$BIN/devissuer" serve -addr "$issuer_addr" -audience usersd &
  issuer=$!
  trap 'kill "$issuer" 2>/dev/null || true' EXIT
  for i in $(seq 50); do
    curl -sf -o /dev/null "http://$issuer_addr/.well-known/openid-configuration" && break
    kill -0 "$issuer" 2>/dev/null || { log "the development issuer did not start on $issuer_addr"; exit 1; }
    [ "$i" = 50 ] && { log "the development issuer did not answer on $issuer_addr"; exit 1; }
    sleep 0.1
  done
  export AUTH_ISSUER=http://$issuer_addr AUTH_AUDIENCE=usersd
  token_cmd='TOKEN=$(make -s token)'
  [ -n "${DEV_ISSUER_ADDR:-}" ] && token_cmd="TOKEN=\$(DEV_ISSUER_ADDR=$issuer_addr make -s token)"
fi

# usersd in the background, so that this script can say when it is ready
# and what stopping leaves behind. In a session of its own, so that Ctrl-C
# reaches it once, through the trap (twice would skip the graceful
# shutdown).
setsid "$BIN/usersd" &
usersd=$!
trap 'kill -INT "$usersd" 2>/dev/null || true' INT TERM
host=${bind%:*}; port=${bind##*:}
case $host in "" | 0.0.0.0 | "[::]" | "::") host=localhost ;; esac
url="http://$host:$port"
for i in $(seq 300); do
  kill -0 "$usersd" 2>/dev/null || break
  if curl -sf -o /dev/null "$url/livez"; then
    log "usersd is ready: API at $url"
    [ -n "${WEB_DIR:-}" ] && log "the web page: $url/"
    [ -n "$token_cmd" ] && log "a token (users:read users:write; SCOPE=... and SUB=... for others): $token_cmd"
    log "Ctrl-C stops usersd"
    break
  fi
  sleep 0.1
done
code=0
wait "$usersd" || code=$?
# wait returns early when the trap ran: wait for usersd's own exit.
while kill -0 "$usersd" 2>/dev/null; do wait "$usersd" || code=$?; done
[ -n "${stopped_note:-}" ] && log "$stopped_note"
exit "$code"
