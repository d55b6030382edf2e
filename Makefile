# The two commands: `make run` (embedded default: SQLite, local staging, in-process broker) and `make test`.
PYTHON_BIN ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT

.PHONY: run test install install-test lint format worker clean

$(VENV)/bin/python:
	$(PYTHON_BIN) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "Python 3.11 is required")'
	$(PYTHON_BIN) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet -e .
	touch $@

# The official Python client, the tests' black-box client. Its package is named `apertur` like ours, so it goes
# into a folder outside sys.path and the tests load it as `apertur_sdk` (tests/official_client.py).
OFFICIAL_CLIENT := apertur-sdk==0.2.0

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(VENV)/bin/pip install --quiet -e '.[test]'
	-$(VENV)/bin/pip uninstall --quiet --yes apertur-sdk 2>/dev/null
	$(VENV)/bin/pip install --quiet --no-deps --upgrade --target $(VENV)/official-client $(OFFICIAL_CLIENT)
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(PYTHON) manage.py migrate --noinput
	$(PYTHON) manage.py apertur_seed_demo
	$(PYTHON) manage.py apertur_run --host $(HOST) --port $(PORT)

test: install-test
	$(PYTHON) manage.py makemigrations --check --dry-run
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

# A separate delivery worker, for production-style set-ups with DRAMATIQ_BROKER_URL set.
worker: install
	$(PYTHON) manage.py rundramatiq --processes 2 --threads 8

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install-test
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) var
