# edgerl: `make demo` and `make test` are the only set-up a newcomer needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow lint type bench venv clean

venv: $(STAMP)

# (Re)create the venv when the project or the lock changes. torch first, pinned to the CPU build.
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock "torch==2.13.0"
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgerl demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check envs agents profiles experiments tests
	$(VENV)/bin/ruff format --check envs agents profiles experiments tests

type: $(STAMP)
	$(VENV)/bin/mypy envs agents profiles experiments

bench: $(STAMP)
	$(VENV)/bin/edgerl bench env --out runs/bench/env.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
