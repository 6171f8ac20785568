# Two entry points a newcomer needs (see README):
#   make up     set everything up and serve the default flow (a real small model, offline, CPU)
#   make test   set everything up and run the test suite
PYTHON ?= python3
VENV   ?= .venv
FLOW   ?= flows/local_chat.yml
BIN     = $(VENV)/bin

.PHONY: setup ray browser up lint test bench clean

$(BIN)/flowctl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

setup: $(BIN)/flowctl

# The optional extra for `placement: {engine: ray}` (Ray Core, ~250 MB; docs/past-one-machine.md).
# `make test` installs it so the Ray tests run instead of skipping; `make up` does not need it.
$(VENV)/.ray-extra: $(BIN)/flowctl
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,ray]'
	touch $@

ray: $(VENV)/.ray-extra

# The web UI tests drive a real headless Chromium; Debian's package, never a downloaded one.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "note: no chromium; the browser tests will be skipped (sudo apt-get install chromium)"; }

up: setup
	$(BIN)/flowctl up $(FLOW)

# ruff, then mypy (strict on engine/ and nodes/) over the package as it installs: a tree of
# links in .typecheck/ maps `flowctl.*` onto cli/, engine/, nodes/, server/ for mypy
lint: setup
	$(BIN)/ruff check .
	@rm -rf .typecheck && mkdir -p .typecheck/flowctl
	@for f in cli/*.py; do ln -s ../../$$f .typecheck/flowctl/; done
	@for d in engine nodes server; do ln -s ../../$$d .typecheck/flowctl/$$d; done
	$(BIN)/mypy

# files in 3 workers (each file in one, in order: fixtures and ports stay per file); the
# tests mostly wait on real processes, so 3 workers fit 2 cores
test: setup ray browser lint
	$(BIN)/python -m pytest -q -n 3 --dist loadfile

bench: setup
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .typecheck flows/.flowctl
