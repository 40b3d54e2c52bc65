# The README's commands. Everything installs what it needs first.
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
CMAKE_FLAGS ?=

.PHONY: all deps build demo test test-release test-asan fuzz bench bench-quick soak format clean package sbom lint

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

demo: build
	./$(BUILD)/drawbridge demo

# The .deb (binary, hardened systemd units, docs) and the container runtime tree,
# from the Release binary, without a container engine (docs/packaging.md).
package: build
	bash scripts/package.sh $(BUILD)/drawbridge $(BUILD)/package

# CycloneDX 1.5 SBOM of the Release binary: every linked library with its Debian
# package version and dpkg's checksum (scripts/sbom.py); validated in make test.
sbom: build
	python3 scripts/sbom.py $(BUILD)/drawbridge $(BUILD)/drawbridge.cdx.json
	node test/deploy/validate_sbom.js $(BUILD)/drawbridge.cdx.json

# clang-tidy with the curated checks in .clang-tidy over src/ and app/ (fails on any
# finding; about 10 min on 2 cores). CI runs it.
lint: build
	bash scripts/lint.sh $(BUILD)

# Release and ASan+UBSan builds, each running the whole suite, then a short fuzz pass.
test: test-release test-asan fuzz

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DDRAWBRIDGE_SANITIZE=ON $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j$(JOBS)

# libFuzzer targets (clang) over the parsers of untrusted input; 20 s each in CI.
FUZZ_SECONDS ?= 20
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -DDRAWBRIDGE_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(FUZZ_BUILD) -j$(JOBS)
	bash test/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# Drawbridge side by side with ssh -R, stunnel and direct loopback (bench/compare.py).
bench:
	bash bench/compare.sh --readme

bench-quick:
	bash bench/compare.sh --quick

# Mixed traffic for 10 minutes (SOAK_MINUTES=N to change) with an agent restarted
# every minute; RSS, fds and threads must stay flat (test/soak/soak.sh). Not in `test`.
soak: build
	bash test/soak/soak.sh $(BUILD)/drawbridge

format:
	find src app test -name '*.cc' -o -name '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
