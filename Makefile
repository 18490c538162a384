# The two commands a newcomer needs: `make run` and `make test`.
GO       ?= go
TOOL     := $(GO) tool -modfile=tools/go.mod
BUF      := $(TOOL) buf
NODE_BIN := web-client/node_modules/.bin

.DEFAULT_GOAL := help
.PHONY: help run run-image token check test test-go test-docs test-web test-faults test-container test-k8s test-cluster image fuzz bench web generate checkgenerate lint breaking devdb-stop devdb-reset build

## help: list the targets (what `make` alone prints)
help:
	@awk '/^## [a-z0-9-]+:/ { sub(/^## /, ""); split($$0, a, ": "); printf "  %-16s %s\n", a[1], substr($$0, length(a[1]) + 3); next } \
	     /^## / { sub(/^## /, ""); printf "  %-16s %s\n", "", $$0 }' $(MAKEFILE_LIST)

## run: start usersd on :8000 with a local PostgreSQL in .devdb/ (or DATABASE_URL)
## and the development OpenID issuer on DEV_ISSUER_ADDR (unless AUTH_ISSUER is set)
DEV_ISSUER_ADDR ?= 127.0.0.1:8001
run: web
	DEV_ISSUER_ADDR=$(DEV_ISSUER_ADDR) scripts/run.sh

## token: print (as the last line) a bearer token from make run's development
## issuer for SCOPE (default "users:read users:write") and SUB (default dev-user)
SCOPE ?= users:read users:write
SUB   ?= dev-user
token:
	@mkdir -p bin && $(GO) build -o bin/devissuer ./cmd/devissuer
	@bin/devissuer token -addr "$(DEV_ISSUER_ADDR)" -scope "$(SCOPE)" -sub "$(SUB)"

## check: the fast loop: lint, then every Go test that needs no PostgreSQL
## (-tags nodb leaves out the test files that do); no database is started
check: lint
	$(GO) test -race -count=1 -tags nodb ./...

## test: every test suite, against one throwaway PostgreSQL (or TEST_DATABASE_URL)
test: build web
	scripts/with-testdb.sh $(MAKE) --no-print-directory test-go test-faults test-web test-docs test-k8s test-container test-cluster

## test-go: the Go tests (needs TEST_DATABASE_URL; `make test` provides it)
test-go:
	$(GO) test -race -count=1 ./...

## test-faults: fault-injection tests against the built binary
test-faults: build
	$(GO) test -count=1 -timeout 10m -tags faults ./test/faults/...

## test-docs: run the README's "Try it" blocks as written against a usersd
## started as make run starts it, checking every outcome their comments promise
test-docs: build web
	$(GO) test -count=1 -timeout 15m -tags docs ./test/docs/...

## test-web: Node and browser tests of the web client against a live usersd
test-web: build web
	web-client/scripts/test.sh

## image: the container image as an OCI archive in bin/ (offline, from scratch; the
## Dockerfile is the same image for machines that can pull golang and distroless)
image: build
	scripts/image.sh

## run-image: run the image (podman, else docker) as make run runs the binary:
## the local PostgreSQL in .devdb, the development issuer, on BIND
run-image: image
	DEV_ISSUER_ADDR=$(DEV_ISSUER_ADDR) scripts/run-image.sh

## test-container: run the image with podman against the test PostgreSQL
test-container: image
	scripts/test-container.sh

## test-k8s: render deploy/k8s with kustomize and decode it strictly into the Kubernetes types
test-k8s:
	scripts/test-k8s.sh

## test-cluster: three replicas behind HAProxy, through PgBouncer, real processes
test-cluster: build
	scripts/test-cluster.sh

## build: the usersd binary in bin/, with release flags
build:
	$(GO) build -trimpath -ldflags "-s -w -X main.version=$$(scripts/version.sh)" -o bin/usersd ./cmd/usersd

## web: build the demo page into web-client/dist
web: web-client/node_modules/.package-lock.json
	cd web-client && npm run build

## fuzz: run each fuzz target for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

## bench: load benchmarks against bare baselines; prints one table
bench:
	bench/run.sh

web-client/node_modules/.package-lock.json: web-client/package.json web-client/package-lock.json
	cd web-client && npm ci --no-audit --no-fund
	@touch $@

## generate: rewrite gen/ and web-client/src/gen/ from proto/, and
## docs/configuration.md from package config
generate: web-client/node_modules/.package-lock.json
	$(BUF) generate
	$(GO) run ./config/gendoc -o docs/configuration.md

## checkgenerate: fail when the committed generated code is stale
checkgenerate: generate
	@out=$$(git status --porcelain -- gen web-client/src/gen docs/configuration.md); \
	if [ -n "$$out" ]; then echo "generated code is out of date; run make generate and commit:"; echo "$$out"; exit 1; fi

## lint: buf lint and format, go vet, gofmt
lint:
	$(BUF) lint
	$(BUF) format --diff --exit-code
	$(GO) vet ./...
	$(GO) vet -tags faults ./test/faults/...
	$(GO) vet -tags container ./test/container/...
	$(GO) vet -tags cluster ./test/cluster/...
	$(GO) vet -tags docs ./test/docs/...
	$(GO) -C tools vet ./imagebuild
	$(GO) -C deploy/k8s-check vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## breaking: check proto/ for breaking changes against main
breaking:
	$(BUF) breaking --against '.git#branch=main'

## devdb-stop: stop the local PostgreSQL of make run
devdb-stop:
	scripts/pgcluster.sh stop .devdb

## devdb-reset: stop the local PostgreSQL and delete its data
devdb-reset: devdb-stop
	@if [ -L .devdb ]; then rm -rf "$$(readlink .devdb)"; fi
	rm -rf .devdb
