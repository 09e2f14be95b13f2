# MBDS — two commands: `make demo` and `make test`.  Both set everything up
# themselves, idempotently: Debian packages, npm ci, a pinned .venv, the
# solc-js entry point for py-solc-x / ape-solidity.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := .build/stamps
APT_PACKAGES := ipfs-cid chromium chromium-driver iproute2
# Serialises the Debian install across checkouts on one machine.
APT_LOCK ?= /tmp/mbds-apt.lock
PYTEST_WORKERS ?= 2
FORGE  := $(CURDIR)/node_modules/.bin/forge
# The gas gate: unit tests only (fuzz and invariant gas depends on the inputs drawn), within this many percent.
GAS_TOLERANCE ?= 1
SNAPSHOT_TESTS := --no-match-path 'foundry/test/invariant/*' --no-match-test '^testFuzz'
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# py-solc-x / ape-solidity find the solc-js entry point inside this checkout, not in ~/.solcx
export SOLCX_BINARY_PATH := $(CURDIR)/.build/solcx

.PHONY: help setup demo test test-fast forge-test gas-snapshot coverage coverage-py ape-compile ape-test bench clean devnet-up devnet-down soak

help:
	@echo "make demo   - set up, then run the scripted MBDS demo on embedded defaults"
	@echo "make test   - set up, then run the whole test suite (forge suite, gas check, pytest)"
	@echo "make forge-test - the Foundry suite alone (gas snapshot check, then forge test, CI profile)"
	@echo "make coverage   - forge coverage of contracts/ (bench baseline excluded)"
	@echo "make coverage-py - pytest-cov of mbds_py/ over the whole suite, subprocesses included"
	@echo "make gas-snapshot - rewrite .gas-snapshot after an intended gas change"
	@echo "make setup  - only the set-up (apt, npm ci, .venv, compiler link)"
	@echo "make ape-compile / ape-test - the same contracts through Ape"

setup: $(STAMP)/apt $(STAMP)/npm $(STAMP)/python $(STAMP)/links

$(STAMP)/apt: Makefile
	@mkdir -p $(STAMP)
	@# One checkout installs at a time: two `make test` on a fresh machine would
	@# otherwise collide on apt's lock, and the second would fail at once.
	@exec 9>>"$(APT_LOCK)" && flock 9 || echo "no lock $(APT_LOCK): installing unserialised"; \
	missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq \
	    && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq $$missing >/dev/null; \
	fi
	@touch $@

$(STAMP)/npm: package.json package-lock.json
	@mkdir -p $(STAMP)
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP)/python: pyproject.toml constraints.txt | $(VENV)/bin/python
	@mkdir -p $(STAMP)
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	@touch $@

# Anvil on the venv's PATH (ape-foundry looks it up there) and the solc-js
# entry point where py-solc-x and ape-solidity find installed compilers.
$(STAMP)/links: $(STAMP)/npm $(STAMP)/python scripts/bin/solc Makefile
	ln -sf $(CURDIR)/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil $(VENV)/bin/anvil
	$(VENV)/bin/mbds compile --link
	@touch $@

demo: setup
	$(VENV)/bin/mbds demo

test: setup forge-test
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadgroup

# Foundry (issue 16): forge comes from the npm lock file (npm ci), the compiler is scripts/bin/solc.
# forge 1.7.1 prints "Diff in ..." for a gas change beyond the tolerance but still exits 0: fail on it here.
forge-test: setup
	@out="$$($(FORGE) snapshot --check --tolerance $(GAS_TOLERANCE) $(SNAPSHOT_TESTS) 2>&1)"; rc=$$?; \
	echo "$$out" | grep -v '^\[PASS\]'; \
	if [ $$rc -ne 0 ] || echo "$$out" | grep -q '^Diff in'; then \
	  echo "gas snapshot check failed (> $(GAS_TOLERANCE)% off .gas-snapshot); after an intended change: make gas-snapshot"; exit 1; fi
	$(FORGE) test

gas-snapshot: setup
	$(FORGE) snapshot $(SNAPSHOT_TESTS)

coverage: setup
	FOUNDRY_FUZZ_RUNS=256 FOUNDRY_INVARIANT_RUNS=32 $(FORGE) coverage --ir-minimum --report summary --no-match-coverage '(contracts/bench|foundry/test)'

# pytest-cov over the whole suite; every Python process the tests start is measured too (pyproject's
# [tool.coverage.run]: patch = subprocess, sigterm)
coverage-py: setup
	rm -rf .build/coverage && mkdir -p .build/coverage
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadgroup --cov --cov-report=term --cov-report=html:.build/coverage/html $(PYTEST_ARGS)

test-fast: setup
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not slow"

soak: setup
	$(VENV)/bin/python -m mbds_py.pbft.soak --start $(or $(START),0) --count $(or $(SEEDS),10000)

ape-compile: setup
	$(VENV)/bin/ape compile

# --force: Ape's compile cache can keep a contract's old ABI after its source changed (ApeWorX/ape#2271)
ape-test: setup
	$(VENV)/bin/ape compile --force
	$(VENV)/bin/ape test tests/ape -c tests/ape/pytest.ini

devnet-up: setup
	$(VENV)/bin/mbds devnet up

devnet-down:
	$(VENV)/bin/mbds devnet down

clean:
	-$(VENV)/bin/mbds devnet down
	rm -rf .build .mbds
