#!/usr/bin/env bash
# test-container.sh runs the container image test (test/container): it loads
# bin/usersd-image.tar (`make image`) into a private podman storage, runs it
# against the test PostgreSQL and a development OpenID issuer, and removes
# everything afterwards. `make test-container` runs it after `make image`.
#
# Without TEST_DATABASE_URL it runs itself under scripts/with-testdb.sh (a
# throwaway cluster). It needs rootful podman with runc; as root it installs
# Debian's podman and runc packages when they are missing, and otherwise
# fails: a container test that cannot run is not a passing one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
GO=${GO:-go}

if [ -z "${TEST_DATABASE_URL:-}" ]; then
  exec "$here/with-testdb.sh" "$0" "$@"
fi

die() { echo "test-container: $*" >&2; exit 1; }

[ -f bin/usersd-image.tar ] || [ -n "${USERSD_IMAGE_ARCHIVE:-}" ] ||
  die "bin/usersd-image.tar is missing: run make image (make test-container does)"

has_runc() { command -v runc >/dev/null || [ -x /usr/sbin/runc ] || [ -x /usr/bin/runc ]; }
missing=()
command -v podman >/dev/null || missing+=(podman)
has_runc || missing+=(runc)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test-container: ${missing[*]} not found; installing Debian's ${missing[*]} package(s)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } ||
      die "could not install ${missing[*]} with apt-get"
  fi
  command -v podman >/dev/null && has_runc ||
    die "the container test needs podman and runc (as root: apt-get install podman runc); NOT skipping it"
fi
[ "$(id -u)" = 0 ] || die "the container test needs root (rootful podman, --network host); NOT skipping it"

exec $GO test -count=1 -timeout 5m -tags container ./test/container/... "$@"
