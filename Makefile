# make demo: install into .venv and run the three-peer demo (Ctrl-C stops it)
# make test: install with test extras, lint, type-check protocol/, run every test
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install demo test test-quick lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]" --config-settings editable_mode=compat
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/duckpeerd demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy protocol

test: lint
	$(PY) -m pytest

test-quick: install
	$(PY) -m pytest -m "not slow"

bench: install
	$(PY) bench/run_all.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
