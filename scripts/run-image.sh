#!/usr/bin/env bash
# run-image.sh runs the container image (make image) as make run runs the
# binary: against the local PostgreSQL in .devdb (over TCP on DEVDB_PORT,
# default 54329, which the container reaches with --network host) and the
# development OpenID issuer on DEV_ISSUER_ADDR, listening on BIND. It uses
# podman when it is installed, else docker. The flags that restricted hosts
# need (this kind of VM: vfs storage, runc, open-files and process limits
# within the host's) are harmless on ordinary ones; USERSD_CONTAINER_FLAGS
# replaces them.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "run-image: $*" >&2; }

engine=$(command -v podman || command -v docker || true)
[ -n "$engine" ] || { log "neither podman nor docker is installed (apt-get install podman runc)"; exit 1; }
# Global flags (podman's storage and runtime) and run flags (limits).
global=()
flags=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
image=usersd:latest
if [ "$(basename "$engine")" = podman ]; then
  global=(--storage-driver=vfs --runtime=runc)
  image=localhost/usersd:latest # podman load names it so
fi
if [ -n "${USERSD_CONTAINER_FLAGS:-}" ]; then
  read -r -a flags <<<"$USERSD_CONTAINER_FLAGS"
fi
[ -f bin/usersd-image.tar ] || { log "bin/usersd-image.tar is missing: run make image (make run-image does)"; exit 1; }
"$engine" "${global[@]}" load -i bin/usersd-image.tar >/dev/null

bind=${BIND:-0.0.0.0:8000}
port=${DEVDB_PORT:-54329}
issuer_addr=${DEV_ISSUER_ADDR:-127.0.0.1:8001}
scripts/pgcluster.sh init .devdb
scripts/pgcluster.sh start .devdb "$port"
scripts/pgcluster.sh createdb .devdb usersd

mkdir -p bin
go build -o bin/devissuer ./cmd/devissuer
bin/devissuer serve -addr "$issuer_addr" -audience usersd &
issuer=$!
trap 'kill "$issuer" 2>/dev/null || true' EXIT
for i in $(seq 50); do
  curl -sf -o /dev/null "http://$issuer_addr/.well-known/openid-configuration" && break
  [ "$i" = 50 ] && { log "the development issuer did not answer on $issuer_addr"; exit 1; }
  sleep 0.1
done
log "the image on $bind; a token: TOKEN=\$(make -s token); Ctrl-C stops it"
"$engine" "${global[@]}" run --rm --network host "${flags[@]}" \
  -e BIND="$bind" \
  -e DATABASE_URL="postgres://postgres@127.0.0.1:$port/usersd?sslmode=disable" \
  -e AUTH_ISSUER="http://$issuer_addr" -e AUTH_AUDIENCE=usersd \
  "$image"
