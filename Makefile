# The two commands of the README. Both install into .venv first (again only when pyproject.toml changed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo up test install kafka-jars

demo: install
	$(BIN)/wxarchive up --demo

up: install
	$(BIN)/wxarchive up

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(VENV)/.installed kafka-jars

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("wxarchive needs Python 3.11+, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

kafka-jars: $(VENV)/.installed
	$(BIN)/wxarchive kafka fetch
