# The few commands people use. `make demo` and `make test` set everything up first.
SHELL := /bin/bash
export ORT_DYLIB_PATH ?= $(CURDIR)/.deps/onnxruntime/libonnxruntime.so.1.32.0
NEXTEST := $(shell cargo nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: setup demo test bench soak fuzz lint fmt screenshots

setup:
	@scripts/setup.sh

## Serve the bundled clips as RTSP cameras and run pantau on them.
demo: setup
	cargo run --release --bin pantau -- demo

## Every test: unit, property, end-to-end (real GStreamer, RTSP, broker, database).
test: setup
ifeq ($(NEXTEST),yes)
	cargo nextest run --workspace --no-fail-fast
else
	cargo test --workspace --no-fail-fast
endif

## Benchmarks (figures in the README come from here). `pantau bench cameras` needs the local
## Mosquitto and PostgreSQL (setup starts them) and takes at most 10 minutes.
bench: setup
	cargo build --release --bin pantau
	./target/release/pantau bench cameras
	cargo bench --bench ingest
	cargo bench --bench replay
	cargo bench --bench events

## The one-hour soak behind the README's plot (8 cameras, a broker and database outage).
soak: setup
	cargo build --release --bin pantau
	./target/release/pantau bench soak --minutes 60 --plot docs/soak.svg

## The long fuzz run (a short one is part of `make test`); see fuzz/README.md.
fuzz: setup
	PANTAU_FUZZ_CASES=1000000 cargo nextest run -p pantau-config --test fuzz
	PANTAU_FUZZ_CASES=1000000 cargo nextest run -p pantau-analytics --test fuzz_mot
	PANTAU_FUZZ_CASES=20000 cargo nextest run -p pantau-dashboard-api --test fuzz_bodies

## Refresh the console screenshots in docs/ (the browser test, run against the demo).
screenshots: setup
	scripts/screenshots.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all
