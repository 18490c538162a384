# The two commands a newcomer needs: `make run` and `make test`.
GO       ?= go
TOOL     := $(GO) tool -modfile=tools/go.mod
BUF      := $(TOOL) buf
NODE_BIN := web-client/node_modules/.bin

.PHONY: run test generate checkgenerate lint breaking devdb-stop devdb-reset build

## run: start usersd on :8000 with a local PostgreSQL in .devdb/ (or DATABASE_URL)
run:
	scripts/run.sh

## test: every test suite, against a throwaway PostgreSQL (or TEST_DATABASE_URL)
test:
	scripts/with-testdb.sh $(GO) test -race -count=1 ./...

## build: the usersd binary in bin/
build:
	$(GO) build -o bin/usersd ./cmd/usersd

web-client/node_modules/.package-lock.json: web-client/package.json web-client/package-lock.json
	cd web-client && npm ci --no-audit --no-fund
	@touch $@

## generate: rewrite gen/ and web-client/src/gen/ from proto/
generate: web-client/node_modules/.package-lock.json
	$(BUF) generate

## checkgenerate: fail when the committed generated code is stale
checkgenerate: generate
	@out=$$(git status --porcelain -- gen web-client/src/gen); \
	if [ -n "$$out" ]; then echo "generated code is out of date; run make generate and commit:"; echo "$$out"; exit 1; fi

## lint: buf lint and format, go vet, gofmt
lint:
	$(BUF) lint
	$(BUF) format --diff --exit-code
	$(GO) vet ./...
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
	rm -rf .devdb
