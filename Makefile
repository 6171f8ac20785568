# Two entry points a newcomer needs (see README):
#   make up     set everything up and serve the default flow (a real small model, offline, CPU)
#   make test   set everything up and run the test suite
PYTHON ?= python3
VENV   ?= .venv
FLOW   ?= flows/local_chat.yml
BIN     = $(VENV)/bin

.PHONY: setup browser up test bench clean

$(BIN)/flowctl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

setup: $(BIN)/flowctl

# The web UI tests drive a real headless Chromium; Debian's package, never a downloaded one.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "note: no chromium; the browser tests will be skipped (sudo apt-get install chromium)"; }

up: setup
	$(BIN)/flowctl up $(FLOW)

test: setup browser
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache flows/.flowctl
