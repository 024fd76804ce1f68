# Kybernate — the targets a user expects. Everything real happens in Meson
# (C build, generated protobuf-c code, unit tests) and pytest (integration).
SHELL      := /bin/bash
BUILD_DIR  ?= build
ASAN_DIR   ?= build-asan
FUZZ_DIR   ?= build-fuzz
PYTHON     ?= /usr/bin/python3
MESON      ?= meson
PYTEST_ARGS ?=

C_SOURCES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

.PHONY: all help setup generate build build-asan test unit integration demo bench valgrind testenv-up testenv-down testenv-status \
        fuzz-build fmt fmt-check lint clean

all: build

help:
	@echo "make setup       install build/test dependencies (idempotent, needs root)"
	@echo "make build       build all binaries into $(BUILD_DIR)/"
	@echo "make generate    generate protobuf-c code (done by build too)"
	@echo "make test        setup + both builds + unit and integration tests"
	@echo "make demo        setup + build + local checkpoint/restore demo"
	@echo "make bench       run benchmarks, print ratio tables"
	@echo "make fmt         reformat C sources with clang-format"
	@echo "make lint        clang-format check"
	@echo "make valgrind    rpc stress test under valgrind (leak check)"
	@echo "make testenv-up  start CRIU/containerd/etcd+apiserver/kubelet/S3 for manual tests"
	@echo "make testenv-down  stop it"
	@echo "make clean       remove build directories"

setup:
	scripts/setup.sh

$(BUILD_DIR)/build.ninja:
	$(MESON) setup $(BUILD_DIR)

$(ASAN_DIR)/build.ninja:
	$(MESON) setup $(ASAN_DIR) -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

generate: $(BUILD_DIR)/build.ninja
	ninja -C $(BUILD_DIR) agent-pb-c

build: $(BUILD_DIR)/build.ninja
	ninja -C $(BUILD_DIR)

build-asan: $(ASAN_DIR)/build.ninja
	ninja -C $(ASAN_DIR)

unit: build-asan
	$(MESON) test -C $(ASAN_DIR) --print-errorlogs --suite unit

$(FUZZ_DIR)/build.ninja:
	CC=clang $(MESON) setup $(FUZZ_DIR) -Dfuzz=true -Dbuildtype=debug \
	  -Db_sanitize=address,undefined -Db_lundef=false

fuzz-build: $(FUZZ_DIR)/build.ninja
	ninja -C $(FUZZ_DIR) tests/fuzz/fuzz_archive_extract tests/fuzz/fuzz_manifest

integration: build-asan fuzz-build
	KYB_BUILD_DIR=$(abspath $(ASAN_DIR)) KYB_FUZZ_DIR=$(abspath $(FUZZ_DIR)) \
	  $(PYTHON) -m pytest -ra $(PYTEST_ARGS) tests

# The optimised build too: gcc warns about some things only at -O2, and
# `make demo` / `make bench` use it.
test: setup lint
	$(MAKE) build
	$(MAKE) unit
	$(MAKE) integration

demo: setup build
	scripts/demo.sh $(BUILD_DIR)

bench: setup build
	$(PYTHON) bench/rpc.py --build $(BUILD_DIR)
	$(PYTHON) bench/agent.py --build $(BUILD_DIR) $(AGENT_BENCH_ARGS)
	$(PYTHON) bench/storage.py --build $(BUILD_DIR) $(STORAGE_BENCH_ARGS)
	$(PYTHON) bench/operator.py --build $(BUILD_DIR) $(OPERATOR_BENCH_ARGS)

valgrind: build
	valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
	  --show-leak-kinds=definite $(BUILD_DIR)/tests/unit/rpc/test-rpc-stress

testenv-up: setup
	$(PYTHON) scripts/testenv.py up

testenv-down:
	$(PYTHON) scripts/testenv.py down

testenv-status:
	$(PYTHON) scripts/testenv.py status

fmt:
	clang-format -i $(C_SOURCES)

fmt-check lint:
	@out=$$(clang-format --dry-run $(C_SOURCES) 2>&1); \
	if [ -n "$$out" ]; then echo "$$out" | head -40; \
	  echo "clang-format: sources are not formatted; run 'make fmt'"; exit 1; fi
	@echo "clang-format: $(words $(C_SOURCES)) files clean"

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(FUZZ_DIR)
