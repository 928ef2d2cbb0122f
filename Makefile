# A thin wrapper over the CMake presets; see README.md.
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 60
DEMO_CONFIG ?= examples/demo.yaml

.PHONY: deps build release demo test fuzz bench format clean

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

fuzz:
	scripts/install-deps --fuzz
	cmake --preset fuzz
	cmake --build --preset fuzz -j $(JOBS) --target fuzz_targets
	scripts/run-fuzz build/fuzz $(FUZZ_SECONDS)

bench:
	scripts/install-deps --bench
	bench/run

format:
	git ls-files '*.h' '*.cpp' | xargs clang-format -i

clean:
	rm -rf build
