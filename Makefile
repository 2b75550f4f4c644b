# Thin wrapper: every target calls the CLI, pytest or a script. No logic lives here.
VENV   ?= .venv
PYTHON ?= $(VENV)/bin/python

.PHONY: install test
install:
	bash scripts/install.sh

test:
	$(PYTHON) -m pytest -q -m "not slow"
