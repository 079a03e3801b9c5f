# Dockyard — the one entry point for people and CI.  `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON   ?= /usr/bin/python3
VENV     := .venv
BIN      := $(VENV)/bin
PROTOS   := $(shell find proto -name '*.proto' | sort)
API_OUT  := lib
STATE    ?= $(CURDIR)/.state
DOCKYARD_USER ?= dockyard
# Hand-written code only: generated dockyard.api is excluded in pyproject.toml.
PY_SRC   := lib services tests bench

.PHONY: help setup host venv protos check-protos lint fmt typecheck test test-unit test-integration \
        test-e2e run bench bench-registry bench-runtime conformance clean

help: ## List targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

setup: host venv protos ## Install everything (apt packages, test user, devices, venv, generated code); idempotent

host: ## Host prerequisites as root: apt packages, the unprivileged $(DOCKYARD_USER) user, subuid/subgid, /dev/fuse, /dev/net/tun
	@if [ "$$(id -u)" = 0 ]; then DOCKYARD_USER=$(DOCKYARD_USER) deploy/setup/host.sh; \
	 else echo "host: not root, skipping host set-up (run 'sudo make host' once)"; fi

venv: $(VENV)/.installed ## The virtualenv with pinned dependencies

$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

protos: $(VENV)/.installed ## Generate dockyard.api from proto/ (sealed; never edit by hand)
	@rm -rf $(API_OUT)/dockyard/api
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m grpc_tools.protoc -Iproto --python_out=$(API_OUT) --grpc_python_out=$(API_OUT) \
		--mypy_out=quiet:$(API_OUT) $(PROTOS)

check-protos: protos ## Fail if regenerating the protobuf code changes anything
	@git diff --exit-code --stat -- $(API_OUT)/dockyard/api && \
	 test -z "$$(git status --porcelain -- $(API_OUT)/dockyard/api)" || \
	 { echo "check-protos: generated code is stale; run 'make protos' and commit"; exit 1; }

fmt: venv ## Format and auto-fix
	$(BIN)/ruff format $(PY_SRC)
	$(BIN)/ruff check --fix $(PY_SRC)

lint: venv ## ruff format check + lint, mypy on hand-written code
	$(BIN)/ruff format --check $(PY_SRC)
	$(BIN)/ruff check $(PY_SRC)
	$(BIN)/mypy lib services

test: setup lint check-protos conformance-build ## Everything CI runs: lint, proto drift, OCI conformance of the registry, unit, integration, interop and e2e tests
	@rc=0; tests/conformance/run-dockyard.sh || rc=1; \
	 $(BIN)/pytest -q -p no:cacheprovider || rc=1; exit $$rc

test-unit: venv ## Unit tests only (fast)
	$(BIN)/pytest -q tests/unit

run: setup ## Start the whole platform on this machine (dockyard up); Ctrl-C stops it
	$(BIN)/dockyard up --state-dir $(STATE)

bench: bench-registry bench-runtime bench-logs ## All benchmarks (side by side with their peers)

bench-registry: setup ## Registry push/pull vs CNCF distribution, medians and ratios
	$(BIN)/python bench/registry_bench.py

bench-runtime: setup ## Runtime (run --rm, 50 at once, memory, pull, commit) vs rootless podman and bare runc
	$(BIN)/python bench/runtime_bench.py

.PHONY: bench-network
bench-network: setup ## User networks (container-to-container, connect latency, -p) vs rootless podman
	$(BIN)/python bench/network_bench.py

.PHONY: bench-logs
bench-logs: setup ## Container logs (read a stopped one, follow a fast writer) vs rootless podman
	$(BIN)/python bench/logs_bench.py

.PHONY: bench-docker
bench-docker: setup ## Docker Engine API (docker CLI run --rm, ps, images; docker-py run) vs rootless podman's compat API
	$(BIN)/python bench/docker_bench.py

.PHONY: soak
soak: venv ## Registry soak: mixed push/pull/delete/GC from many clients (SOAK_MINUTES, default 10); errors 0, RSS and fds flat
	$(BIN)/python bench/soak.py

.PHONY: soak-runtime
soak-runtime: setup ## Platform soak (SOAK_MINUTES, default 20): 16 clients, a fork bomb, a full disk, kill -9 of conmon/runtime/gateway; errors 0, nothing left, flat
	$(BIN)/python bench/soak_runtime.py

.PHONY: compat-docker-py
compat-docker-py: setup ## docker-py's own integration suite (DOCKER_PY_REPO=a docker-py clone) vs Dockyard and podman's compat API
	$(BIN)/python bench/dockerpy_suite.py --repo "$(DOCKER_PY_REPO)"

.PHONY: bench-build
bench-build: setup ## Builder (20 MB COPY, two RUNs, metadata: cold and cached build) vs rootless buildah bud --layers
	$(BIN)/python bench/build_bench.py

.PHONY: conformance-build
conformance-build: ## Build the OCI conformance suite (Debian's Go + pinned sources); cached, a no-op when built
	tests/conformance/build.sh

conformance: setup conformance-build ## OCI distribution-spec conformance suite against a real dockyard-registry process
	tests/conformance/run-dockyard.sh

clean: ## Remove the venv and caches (not the platform's state)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
