#!/usr/bin/env bash
# version.sh prints the version every build of usersd is stamped with
# (make build, make run, make image): git describe of the checkout, or
# "dev" outside git.
cd "$(dirname "$0")/.." && git describe --always --dirty 2>/dev/null || echo dev
