# The two commands: `make demo` and `make test`. Each sets up .venv with the pinned dependencies.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint format lock emulator clean

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

# All benchmarks, one after the other (about three hours on 2 cores, two of them B5); JSON under benchmarks/results/.
bench: $(STAMP)
	$(PY) benchmarks/tiling.py
	$(PY) benchmarks/triggers.py
	$(PY) benchmarks/harvest.py
	$(PY) benchmarks/mosaic.py
	$(PY) benchmarks/orchestration.py
	$(PY) benchmarks/scale.py
	$(PY) benchmarks/summary.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Re-resolve the pinned set after changing pyproject.toml's dependencies.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	.lock-venv/bin/pip freeze --exclude-editable | grep -v '^airflow-provider-gee' > requirements/constraints.txt
	rm -rf .lock-venv

emulator: $(STAMP)
	$(VENV)/bin/gee-emulator --print-connection

clean:
	rm -rf $(VENV) demo-output .pytest_cache
