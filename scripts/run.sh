#!/usr/bin/env bash
# run.sh builds and runs usersd. Without DATABASE_URL it first creates (once)
# and starts a project-local PostgreSQL in .devdb/, which keeps its data
# across runs; `make devdb-stop` stops it and `make devdb-reset` wipes it.
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

mkdir -p bin
go build -o bin/usersd ./cmd/usersd
exec bin/usersd "$@"
