# Two commands for a newcomer: `make run` (install + start the app) and `make test` (install + run the tests).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# llama-cpp-python (GGUF export) builds llama.cpp from source: without the multimodal library nobody here uses
# (export needs the text runtime, the quantizer and the tokenizer). Override e.g. with -DGGML_CUDA=on.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF

.PHONY: install run test test-fast browser

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, from its exact pin: CPU wheel here, CUDA wheel from PyPI on GPU boxes; never unpinned.
	$(PIP) install -q "$$(grep -E '^torch==' requirements.txt)"
	$(PIP) install -q -r requirements.txt -r requirements-dev.txt
	$(PIP) install -q --no-deps -e .
	$(PIP) check
	# llama.cpp's GGUF converter, from the source release of the llama-cpp-python just built (GGUF export)
	$(PY) -m trainer_backend.export.llama_cpp --install
	touch $@

# Headless Chromium for the browser test comes from Debian (Playwright's own browser download is not used).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "tests/test_browser.py needs Chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

run: install
	$(PY) app.py

test: install browser
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest

# The inner loop: ruff and the tests that neither train nor start the app or a browser (CI runs `make test`).
test-fast: install
	$(PY) -m ruff check .
	$(PY) -m pytest -m "not slow"
