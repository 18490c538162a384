# syntax=docker/dockerfile:1
#
# The usersd container image: a static binary on distroless, as nonroot (65532).
#
#   docker build -t usersd --build-arg VERSION=$(git describe --always --dirty) \
#     --build-arg REVISION=$(git rev-parse HEAD) .
#
# This file is not built by `make test` or CI: they have no Docker engine and
# cannot pull golang or distroless. `make image` writes the equivalent image
# offline (scripts/image.sh, tools/imagebuild: the same build flags, CA
# certificates, nonroot 65532, /tmp, entrypoint, port and labels), and
# `make test-container` runs that one. Keep the two in step.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
# The release flags of `make build`, with cgo off: distroless static has no libc.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/usersd ./cmd/usersd

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=
ARG LICENSES=NOASSERTION
LABEL org.opencontainers.image.title="usersd" \
      org.opencontainers.image.description="usersd: a users API (Connect, gRPC, gRPC-Web and JSON REST) on PostgreSQL" \
      org.opencontainers.image.source="https://github.com/acme/usersd" \
      org.opencontainers.image.licenses="${LICENSES}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/usersd /usersd
USER nonroot
EXPOSE 8000
# Docker-format images only: podman builds OCI images by default and drops it
# (podman run --health-cmd "/usersd healthcheck" instead; Kubernetes uses probes).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["/usersd", "healthcheck"]
ENTRYPOINT ["/usersd"]
