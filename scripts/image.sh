#!/usr/bin/env bash
# image.sh writes the usersd container image as an OCI archive,
# bin/usersd-image.tar, offline: no daemon, no registry, no root. `make image`
# runs it after `make build`.
#
# The image is the one the Dockerfile describes (distroless static, nonroot):
# a static release binary at /usersd (bin/usersd-linux-static, the flags of
# `make build` plus CGO_ENABLED=0) on an empty base with CA certificates, a
# passwd and group entry for nonroot (65532) and a writable /tmp, assembled by
# tools/imagebuild. Same sources, same archive: every timestamp is the commit
# time (or SOURCE_DATE_EPOCH).
#
#   podman load -i bin/usersd-image.tar     # or: docker load -i bin/usersd-image.tar
#
# Environment: IMAGE_ARCHIVE (default bin/usersd-image.tar), IMAGE_NAME
# (usersd), IMAGE_LICENSES (SPDX expression for the licenses label),
# SOURCE_DATE_EPOCH, GOARCH (cross-build for another architecture).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}

out=${IMAGE_ARCHIVE:-bin/usersd-image.tar}
name=${IMAGE_NAME:-usersd}
version=$(scripts/version.sh)
revision=$(git rev-parse HEAD 2>/dev/null || true)
created=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
certs=/etc/ssl/certs/ca-certificates.crt

if [ ! -s "$certs" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "image: $certs missing; installing Debian's ca-certificates package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null; }
  fi
  [ -s "$certs" ] || { echo "image: $certs not found: install Debian's ca-certificates package" >&2; exit 1; }
fi

# bin/usersd of `make build` links libc through cgo's resolver; the image has
# no libc, so it gets the same build with cgo off.
mkdir -p bin
CGO_ENABLED=0 GOOS=linux $GO build -trimpath -ldflags "-s -w -X main.version=$version" \
  -o bin/usersd-linux-static ./cmd/usersd
$GO -C tools build -o ../bin/imagebuild ./imagebuild

bin/imagebuild \
  -binary bin/usersd-linux-static \
  -out "$out" \
  -name "$name" \
  -version "$version" \
  -revision "$revision" \
  -created "$created" \
  -cacerts "$certs" \
  -label org.opencontainers.image.source=https://github.com/acme/usersd \
  -label "org.opencontainers.image.licenses=${IMAGE_LICENSES:-NOASSERTION}"
echo "load it with: podman load -i $out  (or docker load -i $out); run it as in docs/deployment.md, Container image, or with make run-image"
