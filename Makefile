# A thin wrapper over the CMake presets; see README.md.
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 60
SOAK_RUNS ?= 500
DEMO_CONFIG ?= examples/demo.yaml

.PHONY: deps build release demo test soak fuzz bench bench-smoke format clean

deps:
	scripts/install-deps

build: deps
	cmake --preset dev
	cmake --build --preset dev -j $(JOBS)

release: deps
	cmake --preset release
	cmake --build --preset release -j $(JOBS)

# Builds the optimised binary and runs it in the foreground on the demo
# configuration: SMTP on 127.0.0.1:2525, mail lands in ./demo-state/outbox.
demo: release
	build/release/src/cli/mailbridge serve --config $(DEMO_CONFIG)

test: build
	ctest --preset dev -j $(JOBS)

# The crash test (tests/e2e/test_crash.py) with SOAK_RUNS kills instead of the
# 30 that `make test` runs; CRASH_SEED=<n> repeats a run. Outside ctest, whose
# time limit is for CI-size tests.
soak: build
	cd tests/e2e && CRASH_RUNS=$(SOAK_RUNS) MAILBRIDGE_BIN=$(CURDIR)/build/dev/src/cli/mailbridge \
		python3 -m unittest -v test_crash

fuzz:
	scripts/install-deps --fuzz
	cmake --preset fuzz
	cmake --build --preset fuzz -j $(JOBS) --target fuzz_targets
	scripts/run-fuzz build/fuzz $(FUZZ_SECONDS)

bench:
	scripts/install-deps --bench
	bench/run

# Checks that every benchmark scenario runs and produces numbers (tiny
# counts, no speed judged), so the dev build will do. Without Postfix the
# Postfix reference is skipped, with the reason in the output.
bench-smoke: build
	MB_BIN=$(CURDIR)/build/dev/src/cli/mailbridge bench/run --smoke

format:
	git ls-files '*.h' '*.cpp' | xargs clang-format -i

clean:
	rm -rf build
