#!/usr/bin/env bash
# fuzz.sh runs every fuzz target of ./users and ./server for
# FUZZTIME each (default 30s), one after the other. New crashers are written
# to <package>/testdata/fuzz/<target>/; commit them with the fix, so that they
# run as seed corpus in every `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-30s}
GO=${GO:-go}

for pkg in ./users ./server; do
  targets=$($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true)
  [ -n "$targets" ] || { echo "fuzz: no fuzz targets found in $pkg" >&2; exit 1; }
  for t in $targets; do
    echo "fuzz: $pkg $t for $FUZZTIME"
    $GO test -run='^$' -fuzz="^${t}\$" -fuzztime="$FUZZTIME" "$pkg"
  done
done
