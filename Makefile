# make demo   set everything up, run the create_task demo on ferroloop and on asyncio
# make test   set everything up, run cargo test, pytest, the lints and CPython's asyncio suite
# make test-pythons  the same pytest and CPython-suite runs on every other CPython installed here
# make test-devmode  pytest again in Python's development mode (asyncio's debug mode everywhere)
# make bench  set up a separate venv with uvloop and rloop, run the benchmarks (not part of test)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BENCH_VENV := .venv-bench
BENCH_BIN := $(BENCH_VENV)/bin
# Release builds for everything that is run or measured; `make dev` for quick iterations.
MATURIN_FLAGS ?= --release

.PHONY: demo test test-devmode test-pythons peer-suites build dev lint rust-test loadgen services py-test conformance bench-install bench bench-quick bench-instructions clean

$(BIN)/.ready: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

build: $(BIN)/.ready
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/maturin develop -q $(MATURIN_FLAGS)

dev: MATURIN_FLAGS =
dev: build

demo: build
	$(BIN)/python demo/create_task_demo.py ferroloop
	$(BIN)/python demo/create_task_demo.py asyncio

rust-test:
	cargo test --lib
	cargo test -q --release --manifest-path benchmarks/loadgen/Cargo.toml

# The benchmarks' load client (std, mio and rustls with ring; builds in about a minute).
LOADGEN := benchmarks/loadgen/target/release/ferroloop-loadgen
loadgen:
	cargo build -q --release --manifest-path benchmarks/loadgen/Cargo.toml

# What the tests start for themselves, from Debian's packages: redis-server for
# tests/test_redis.py (PostgreSQL is on the machine already), wrk for the HTTP rows' smoke runs
# in tests/test_benchmarks_smoke.py. Without one, its tests skip and say why.
services:
	for pkg in redis-server wrk; do \
		command -v $$pkg >/dev/null || apt-get install -y -qq $$pkg >/dev/null \
			|| (apt-get update -qq && apt-get install -y -qq $$pkg >/dev/null) \
			|| echo "$$pkg could not be installed: the tests that need it will skip"; \
	done

py-test: build loadgen services
	$(BIN)/pytest -q tests

lint: $(BIN)/.ready
	cargo fmt --check
	cargo fmt --check --manifest-path benchmarks/loadgen/Cargo.toml
	cargo clippy --all-targets -- -D warnings
	cargo clippy -q --release --manifest-path benchmarks/loadgen/Cargo.toml -- -D warnings
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# CPython's own asyncio test-suite against ferroloop; fails on any failure not in
# conformance/expected_failures.txt and on any listed test that passes.
conformance: build
	$(BIN)/python -m conformance.run

# pytest last: its closing line is the one CI reads.
test: lint rust-test conformance py-test

# pytest again in Python's development mode: asyncio's debug mode in every loop, the debug hooks
# on the memory allocators, and a ResourceWarning (an unclosed socket, transport or file, freed
# by the collector) fails the test that meets it (tests/conftest.py). About 7 minutes; not part
# of `make test`.
test-devmode: build loadgen services
	PYTHONDEVMODE=1 $(BIN)/pytest -q tests

# CI's machines have CPython 3.11 only; where others are installed (pyenv's, or python3.X on PATH),
# each gets a venv, a debug build, CPython's asyncio suite of its own version and pytest.
OTHER_PYTHONS ?= 3.9 3.10 3.12 3.13 3.14
test-pythons: loadgen services
	for v in $(OTHER_PYTHONS); do .ci/test-python $$v || exit 1; done

# Other projects' own suites (anyio, aiohttp, uvicorn, asyncssh, starlette, uvloop's asyncio
# classes, asyncpg, redis-py's asyncio client), each on asyncio and on ferroloop's release wheel;
# fails if a test fails on ferroloop only. Needs the network, about 30 minutes; not part of
# `make test`. PEER_SUITES picks some.
peer-suites: bench-install services
	$(BENCH_BIN)/python -m conformance.peer_suites --wheel target/wheels/*.whl $(PEER_SUITES)

$(BENCH_BIN)/.ready: benchmarks/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_BIN)/pip install -q --upgrade pip
	$(BENCH_BIN)/pip install -q -r benchmarks/requirements.txt
	touch $@

# The bench venv gets a release wheel, not an editable install: an editable install shares the
# extension module in python/ with .venv, and the last `make dev` would be what got measured.
bench-install: $(BENCH_BIN)/.ready
	rm -rf target/wheels
	$(BENCH_BIN)/maturin build -q --release -i $(BENCH_BIN)/python -o target/wheels
	$(BENCH_BIN)/pip install -q --force-reinstall --no-deps target/wheels/*.whl

bench: bench-install loadgen services
	$(BENCH_BIN)/python benchmarks/run.py $(BENCH_ARGS)

bench-quick: BENCH_ARGS = --quick
bench-quick: bench

# Instructions per operation of the core rows, and of the loop's process on some network rows,
# counted by callgrind (valgrind, Debian's package): steady where the wall-clock rows of this 2-core
# VM are not. Writes docs/instructions.md.
bench-instructions: bench-install loadgen services
	command -v valgrind >/dev/null || apt-get install -y -qq valgrind
	$(BENCH_BIN)/python benchmarks/instructions.py --docs

clean:
	rm -rf $(VENV) $(BENCH_VENV) target
