# tre: two commands.  `make run` sets everything up and starts the environment with demo data;
# `make test` sets everything up (plus dev tools and Debian's chromium) and runs every check.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
export TRE_DATA_DIR ?= $(CURDIR)/.tre
# Playwright drives Debian's chromium; it must never download a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: run test setup setup-dev workspace-venv lint typecheck pytest pytest-postgres bench clean help

help:
	@echo "make run    - install, migrate and start tre with demo data"
	@echo "make test   - install with dev tools and run ruff, mypy and every test (SQLite and PostgreSQL)"
	@echo "make bench  - run the benchmarks against their peers"

$(VENV)/.runtime: pyproject.toml tre_lib/pseudonymise/_fasthmac_build.py /usr/include/openssl/sha.h
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	@touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.runtime
	$(PIP) install -q -e '.[dev,bench]'
	@touch $@

node_modules/.bin/configurable-http-proxy: package.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

/usr/bin/python3.11:
	@echo "Installing Debian's python3.11 for the workspace environment (researchers cannot run root's pyenv)"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11 python3.11-venv

# The environment the researchers' single-user servers run in, outside root's private home.
workspace-venv: $(VENV)/.runtime /usr/bin/python3.11
	@/usr/bin/python3.11 -c 'import ensurepip' 2>/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11-venv)
	deploy/local/build-workspace-venv.sh

# gcc and OpenSSL's headers compile tre_lib's fast HMAC helper during the install (hatch_build.py).
/usr/include/openssl/sha.h:
	@echo "Installing Debian's gcc and libssl-dev for the compiled HMAC helper"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libssl-dev

/usr/bin/chromium:
	@echo "Installing Debian's chromium for the browser tests (never 'playwright install')"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# nftables seals each workspace's network namespace (docs/adr/0012-sealed-workspaces.md).
/usr/sbin/nft:
	@echo "Installing Debian's nftables for the workspaces' firewall"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables iproute2

setup: $(VENV)/.runtime node_modules/.bin/configurable-http-proxy workspace-venv /usr/sbin/nft

setup-dev: setup $(VENV)/.dev /usr/bin/chromium

run: setup
	$(BIN)/tre db upgrade
	$(BIN)/tre up --demo

lint: setup-dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	PYTHONPATH=platform:. $(BIN)/lint-imports --no-cache

typecheck: setup-dev
	$(BIN)/mypy

pytest: setup-dev
	$(BIN)/pytest -p no:cacheprovider --durations=25

pytest-postgres: setup-dev
	$(BIN)/pytest -p no:cacheprovider --durations=25 --db postgres

test: lint typecheck pytest pytest-postgres

bench: setup-dev
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) node_modules .tre .mypy_cache .ruff_cache .pytest_cache
