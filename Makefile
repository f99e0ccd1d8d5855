# multiscale: `make demo` runs the quickstart, `make test` the lint and the whole test suite,
# `make test-fast` the lint and the tests not marked slow (under 2 minutes on 2 cores), `make lint` ruff alone.
# Each creates .venv in the repository root when it is missing and installs the package into it.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The embedded corpus: Debian's translated manual pages. These are the packages of the default
# grouping (multiscale.families.MANPAGES_GROUPING: germanic, romance, slavic, sino_tibetan, japonic);
# keep the two in sync (tests/test_families.py checks it).
MANPAGES_PKGS := manpages-de manpages-nl manpages-sv manpages-da manpages-nb \
	manpages-fr manpages-es manpages-it manpages-pt-br manpages-ro \
	manpages-ru manpages-pl manpages-cs manpages-uk manpages-sr manpages-mk \
	manpages-zh manpages-ja
export XLA_PYTHON_CLIENT_PREALLOCATE ?= false

.PHONY: venv corpus-packages lint test test-fast demo bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Installs the manual-page packages when any is missing (needs root, as on CI), else prints the command.
corpus-packages:
	@missing=""; for p in $(MANPAGES_PKGS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing corpus packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing corpus packages; run: sudo apt-get update && sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

lint: venv
	$(VENV)/bin/ruff check .

# The suite runs on PYTEST_WORKERS processes (pytest-xdist; default: one per CPU, at most 4), each
# test where a worker is free (worksteal), since the slow tests are a few long NUTS fits and trainings.
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)

test: lint corpus-packages
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal tests

test-fast: lint corpus-packages
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal tests -m "not slow"

demo: venv corpus-packages
	$(VENV)/bin/multiscale demo --out demo_out

bench: venv
	$(PIP) install -q -e '.[test,bench]'
	for b in benchmarks/bench_*.py; do $(PY) $$b; done

clean:
	rm -rf $(VENV) demo_out
