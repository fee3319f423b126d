# The two commands: `make up` (serve on 127.0.0.1:3000) and `make test` (every test).
# Both install what they need on a fresh machine and stop what they start.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

COMPONENTS := user product order delivery web
WASM_PACKAGES := $(addprefix -p marketplace-,$(COMPONENTS)) -p probe-component
# Test servers on free ports of their own (from these upwards), in a fresh directory per run.
# Below 32768, outside Linux's ephemeral range: a port there is never taken by a client
# socket between the check and the server's start (the start still retries on the next one).
TEST_PG_PORT := $(or $(TEST_PG_PORT),$(shell tools/dev/free-port.sh 15432))
TEST_REDIS_PORT := $(or $(TEST_REDIS_PORT),$(shell tools/dev/free-port.sh 16379))
TEST_RUN_DIR := $(shell mktemp -d -u /tmp/marketplace-test.XXXXXX)
# Builds are cached across clones of the repository (CI clones afresh every run).
CACHE_TARGET ?= $(HOME)/.cache/marketplace/target

.PHONY: up test build deps wasm host migrate-tool unit-test integration-test deploy-test fmt lint clean-test-servers

# `make up` builds only what serving needs (the components and the migration tool; the test
# host too with USE_TEST_HOST=1), never the test suite.
up: deps wasm migrate-tool
	tools/dev/up.sh

build: deps wasm host

migrate-tool:
	cargo build -p marketplace-migrate $(if $(USE_TEST_HOST),-p spin-test-host)

deps: target
	@rustup target list --installed 2>/dev/null | grep -q wasm32-wasip2 || rustup target add wasm32-wasip2
	@command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }
	@command -v openssl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; }

# `target` is a link into the cache unless the checkout already has its own.
target:
	@if [ ! -e target ]; then mkdir -p "$(CACHE_TARGET)" && ln -s "$(CACHE_TARGET)" target; fi

# The components, as `spin build` builds them (see each [component.x.build] in spin.toml).
wasm:
	cargo build --target wasm32-wasip2 --release $(WASM_PACKAGES)

# The host and the migration tool, built by the same `cargo test --workspace` invocation that
# `make test` runs: one feature resolution, so a fresh machine compiles wasmtime once, not twice
# (a narrower `cargo build -p …` resolves other features and rebuilt it: ~10 minutes cold).
host:
	cargo test --workspace --no-run

test: deps wasm
	@mkdir -p $(TEST_RUN_DIR)
	@pg_port=$(TEST_PG_PORT); redis_port=$(TEST_REDIS_PORT); \
	trap 'tools/dev/pg.sh stop $(TEST_RUN_DIR)/pg; tools/dev/redis.sh stop $(TEST_RUN_DIR)/redis $$redis_port; rm -rf $(TEST_RUN_DIR)' EXIT; \
	until tools/dev/pg.sh start $(TEST_RUN_DIR)/pg $$pg_port; do \
	  [ $$pg_port -lt $$(( $(TEST_PG_PORT) + 20 )) ] || exit 1; \
	  echo "port $$pg_port was taken meanwhile; trying the next free one" >&2; \
	  pg_port=$$(tools/dev/free-port.sh $$((pg_port + 1))); \
	done; \
	until tools/dev/redis.sh start $(TEST_RUN_DIR)/redis $$redis_port; do \
	  [ $$redis_port -lt $$(( $(TEST_REDIS_PORT) + 20 )) ] || exit 1; \
	  redis_port=$$(tools/dev/free-port.sh $$((redis_port + 1))); \
	done; \
	export MARKETPLACE_TEST_PG=$$(tools/dev/pg.sh url $$pg_port); \
	export MARKETPLACE_TEST_REDIS=redis://127.0.0.1:$$redis_port; \
	export MARKETPLACE_TEST_LOG=$(TEST_RUN_DIR)/components.log; \
	cargo test --workspace --no-fail-fast; \
	cargo test --workspace --test integration -- --ignored --exact logs::the_captured_logs_of_the_whole_test_run_hold_nothing_secret_shaped; \
	$(MAKE) --no-print-directory deploy-test; \
	tests/e2e/run.sh

# Manifests, images, workflows (offline validation; see docs/deploy.md).
deploy-test:
	tests/deploy/validate.sh

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# ---------------------------------------------------------------- scale-out, black-box, bench
# (tools/scaled, tests/blackbox, bench; docs/scaling.md)
.PHONY: up-scaled blackbox blackbox-single blackbox-scaled bench
BASE_URL ?= http://127.0.0.1:3000

# Two order-shard PostgreSQL servers, a product primary + streaming replica, two Redis
# servers, two app instances behind haproxy on $(LISTEN) (default 127.0.0.1:3000).
up-scaled: build
	tools/scaled/up.sh run

# The black-box HTTP tests against a running marketplace at $(BASE_URL).
blackbox:
	tests/blackbox/run.sh "$(BASE_URL)"

# One app process on real Spin with SQLite key-value files: start it, run the tests, stop it.
blackbox-single: build
	tests/blackbox/run.sh --single

# The scaled topology on real Spin (two instances, Redis labels, haproxy): start, test, stop.
blackbox-scaled: build
	tests/blackbox/run.sh --scaled

# The test host and real Spin serve the same probe app; every answer must agree (tests/agreement).
agreement: build
	tests/agreement/run.sh

# Seeds a realistic catalog on the scaled topology and measures it (writes BENCHMARKS.md).
bench: build
	bench/run.sh

# ---------------------------------------------------------------- reliability (docs/reliability.md)
.PHONY: fuzz fuzz-quick soak
# Schemathesis against all four OpenAPI documents on a private topology (FUZZ_MAX_EXAMPLES=40).
fuzz: build
	tests/fuzz/run.sh

# The same, 10 cases per operation (about a minute and a half).
fuzz-quick: build
	tests/fuzz/run.sh --quick

# Faults under a steady mixed load on a private scaled topology, each ending in consistency checks.
soak: build
	tests/soak/run.sh

# ---------------------------------------------------------------- storefront (docs/storefront.md)
.PHONY: e2e
# The buyer journeys in a real headless Chromium against a private app on real Spin.
e2e: build
	tests/e2e/run.sh
