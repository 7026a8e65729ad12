# Two commands for a newcomer: `make run` (install + start the app) and `make test` (install + run the tests).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install run test

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, from its exact pin: CPU wheel here, CUDA wheel from PyPI on GPU boxes; never unpinned.
	$(PIP) install -q "$$(grep -E '^torch==' requirements.txt)"
	$(PIP) install -q -r requirements.txt -r requirements-dev.txt
	$(PIP) install -q --no-deps -e .
	$(PIP) check
	touch $@

run: install
	$(PY) app.py

test: install
	$(PY) -m pytest
