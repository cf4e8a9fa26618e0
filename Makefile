# The two commands of the README. Both install into .venv first (again only when pyproject.toml changed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo up test check install kafka-jars

demo: install
	$(BIN)/wxarchive up --demo

up: install
	$(BIN)/wxarchive up

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# every ruff and mypy finding, with none of the allowances tests/unit/test_lint.py still makes (NOT_YET_CLEAN)
check: $(VENV)/.installed
	$(BIN)/python -m ruff check .
	$(BIN)/python -m mypy

install: $(VENV)/.installed kafka-jars

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("wxarchive needs Python 3.11+, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

kafka-jars: $(VENV)/.installed
	$(BIN)/wxarchive kafka fetch
