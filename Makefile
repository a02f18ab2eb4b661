# The README's two commands: `make demo` (build and run the examples) and
# `make test` (every test). Both install what they need on a fresh machine.

CARGO ?= cargo
GUESTS := -p hello-flow -p pipeline-flow -p etl-flow -p hostile-flow -p hostile-io-flow -p hostile-raw-flow -p bench-flow -p ui-fixtures-flow -p durable-flow -p pause-flow
GUEST_DIR := target/wasm32-wasip2/guest
SLUICE := target/debug/sluice
# The venv bench/prefect/setup.sh makes: Prefect and matplotlib for bench/run.py.
# Root installs system packages itself; anyone else through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BENCH_PYTHON := $(or $(PREFECT_BENCH_VENV),target/prefect-venv)/bin/python

.PHONY: setup guests python-example js-example build demo test lint bench ui-deps openapi-deps pg-deps deploy-deps metrics-deps screenshots

setup:
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

guests: setup
	$(CARGO) build --profile guest --target wasm32-wasip2 $(GUESTS)

# The Python SDK's flows (examples/python-*, tests/guests/python-*) need no
# step here: tests/python_sdk.rs builds them with the real `sluice build`, which
# installs componentize-py into target/sluice-toolchains on first use and
# copies a build whose sources did not change from its content-addressed cache.
python-example:
	./examples/python-greet/build.sh

# The JavaScript example (sluice-sdk): build.mjs installs the pinned jco and
# componentize-js with `npm ci` from guest-sdk/js/toolchain/package-lock.json
# into target/js-toolchain on first use; rebuilt only when a source changed.
JS_HELLO := $(GUEST_DIR)/js_hello.wasm
js-example: $(JS_HELLO)

$(JS_HELLO): examples/js-hello/flow.js guest-sdk/js/src/index.js guest-sdk/js/build.mjs guest-sdk/js/toolchain/package-lock.json wit/v0.2/flow.wit
	node guest-sdk/js/build.mjs examples/js-hello/flow.js $@

# The web UI's browser tests: Debian's chromium and playwright-core (no browser download).
ui-deps:
	@command -v chromium >/dev/null 2>&1 || ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium)
	@test -d tests/ui/node_modules/playwright-core || npm ci --prefix tests/ui --no-audit --no-fund

# The OpenAPI document's checks (tests/openapi_client.rs): a validator and a
# client generator from PyPI, pinned, in their own venv.
openapi-deps:
	./tests/openapi/setup.sh

# The metrics checks (tests/observability.rs): prometheus_client's text-format
# parser from PyPI, pinned, in its own venv.
metrics-deps:
	./tests/metrics/setup.sh

# deploy/'s linters (deploy/check.sh): check-jsonschema for the Compose file and
# kubernetes-validate for the manifests, from PyPI, pinned, in their own venv.
deploy-deps:
	./deploy/setup.sh

# PostgreSQL for the store suite and the benchmarks: Debian's server package (the tests and benches start and stop their own cluster).
pg-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql)

# docs/screenshots/*.png, from a server with a few runs (tests/ui/screenshots.mjs).
screenshots: guests ui-deps
	SLUICE_EXAMPLES_BUILT=1 $(CARGO) test -p sluice --test ui -- --exact screenshots_of_the_main_pages_render
	mkdir -p docs/screenshots && cp target/screenshots/*.png docs/screenshots/

build:
	$(CARGO) build -p sluice

# The embedded default: SQLite and the artifact folder in SLUICE_HOME.
demo: guests build
	$(SLUICE) exec $(GUEST_DIR)/hello_flow.wasm --param name=Leo
	$(SLUICE) deploy $(GUEST_DIR)/hello_flow.wasm --flow hello --name leo --param name=Leo
	$(SLUICE) deploy $(GUEST_DIR)/hello_flow.wasm --flow hello --name marvin --param name=Marvin
	$(SLUICE) deploy $(GUEST_DIR)/pipeline_flow.wasm --flow pipeline --name classic
	$(SLUICE) run hello/leo --watch
	$(SLUICE) run hello/marvin --watch
	$(SLUICE) run pipeline/classic --watch
	$(SLUICE) deployment ls
	$(SLUICE) flow-run ls --limit 5

test: guests python-example js-example ui-deps openapi-deps pg-deps deploy-deps metrics-deps
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		SLUICE_EXAMPLES_BUILT=1 $(CARGO) nextest run --no-fail-fast; \
	else \
		SLUICE_EXAMPLES_BUILT=1 $(CARGO) test --no-fail-fast; \
	fi
	$(CARGO) test --doc
	# deploy/: the Compose file and Kubernetes manifests, linted (and the linters shown to fail on broken copies).
	$(CARGO) build -p sluice
	./deploy/check.sh
	# The benchmarks' smoke mode: every workload once, small, so they cannot rot.
	./bench/prefect/setup.sh
	$(BENCH_PYTHON) bench/run.py --quick
	SLUICE_EXAMPLES_BUILT=1 $(CARGO) test -p sluice --bench server_latency --bench auth_overhead --bench cpu_limit --bench ui_pages --bench replay --bench events -- --quick

# The artifact store against Garage, a real S3-compatible object store, instead
# of the moto emulator `make test` uses. Garage is built from crates.io into
# target/tools the first time, which is too slow for every CI run (README,
# "Artifact store"); later runs reuse it.
.PHONY: test-s3-real
test-s3-real:
	./tests/s3/install-garage.sh >/dev/null
	SLUICE_S3_TEST_SERVER=garage $(CARGO) test -p sluice --test s3_store

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --profile guest --target wasm32-wasip2 $(GUESTS) -- -D warnings

# Sluice, raw wasmtime and Prefect side by side (bench/run.py; figures in
# BENCHMARKS.md), then the server's throughput and latency breakdown.
bench: guests python-example pg-deps
	./bench/prefect/setup.sh
	$(BENCH_PYTHON) bench/run.py
	$(CARGO) bench -p sluice --bench server_latency
	$(CARGO) bench -p sluice --bench auth_overhead
	$(CARGO) bench -p sluice --bench cpu_limit
	$(CARGO) bench -p sluice --bench ui_pages
	$(CARGO) bench -p sluice --bench replay
	$(CARGO) bench -p sluice --bench events
