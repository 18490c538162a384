#!/usr/bin/env bash
# fuzz.sh runs every fuzz target of ./server (server/fuzz_test.go) for
# FUZZTIME each (default 30s), one after the other. New crashers are written
# to server/testdata/fuzz/<target>/; commit them with the fix, so that they
# run as seed corpus in every `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-30s}
GO=${GO:-go}

targets=$($GO test -list '^Fuzz' ./server | grep '^Fuzz' || true)
[ -n "$targets" ] || { echo "fuzz: no fuzz targets found in ./server" >&2; exit 1; }
for t in $targets; do
  echo "fuzz: $t for $FUZZTIME"
  $GO test -run='^$' -fuzz="^${t}\$" -fuzztime="$FUZZTIME" ./server
done
