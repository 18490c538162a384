#!/usr/bin/env bash
# run.sh builds and runs usersd. Without DATABASE_URL it first creates (once)
# and starts a project-local PostgreSQL in .devdb/, which keeps its data
# across runs; `make devdb-stop` stops it and `make devdb-reset` wipes it.
# Without AUTH_ISSUER (and without AUTH_DISABLED=true) it also starts the
# development OpenID issuer (cmd/devissuer) on DEV_ISSUER_ADDR, default
# 127.0.0.1:8001, and points usersd at it; `make token` prints a token it
# signed. The issuer stops when usersd does.
set -euo pipefail
cd "$(dirname "$0")/.."

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
  scripts/pgcluster.sh init "$dir"
  scripts/pgcluster.sh start "$dir" "${DEVDB_PORT:-54329}"
  scripts/pgcluster.sh createdb "$dir" usersd
  DATABASE_URL=$(scripts/pgcluster.sh url "$dir" usersd)
  export DATABASE_URL
fi

if [ -z "${WEB_DIR:-}" ] && [ -f web-client/dist/index.html ]; then
  export WEB_DIR=web-client/dist
fi

# BIN: where the binaries go (bin/; the tests build elsewhere). The same
# version stamp as make build and the image.
BIN=${BIN:-bin}
mkdir -p "$BIN"
go build -ldflags "-X main.version=$(scripts/version.sh)" -o "$BIN/usersd" ./cmd/usersd

if [ -z "${AUTH_ISSUER:-}" ] && [ "${AUTH_DISABLED:-}" != true ]; then
  addr=${DEV_ISSUER_ADDR:-127.0.0.1:8001}
  go build -o "$BIN/devissuer" ./cmd/devissuer
  "$BIN/devissuer" serve -addr "$addr" -audience usersd &
  issuer=$!
  trap 'kill "$issuer" 2>/dev/null || true' EXIT
  for i in $(seq 50); do
    curl -sf -o /dev/null "http://$addr/.well-known/openid-configuration" && break
    kill -0 "$issuer" 2>/dev/null || { echo "run.sh: the development issuer did not start (is $addr taken?)" >&2; exit 1; }
    [ "$i" = 50 ] && { echo "run.sh: the development issuer did not answer on $addr" >&2; exit 1; }
    sleep 0.1
  done
  export AUTH_ISSUER=http://$addr AUTH_AUDIENCE=usersd
  echo "run.sh: development issuer at $AUTH_ISSUER; get a token with: TOKEN=\$(make -s token)" >&2
fi

"$BIN/usersd" "$@"
