# The two commands: `make demo` and `make test`. Each sets up .venv with the pinned dependencies.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# dev/ (the local Airflow harness, the demo driver) is development code, not installed: run from the root
RUN := PYTHONPATH=. $(PY)

.PHONY: demo test check compat dist bench lint format lock lock-oldest emulator clean chromium

$(STAMP): pyproject.toml packages/gee-emulator/pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e 'packages/gee-emulator[gcs]' -e '.[dev,emulator]'
	touch $(STAMP)

# Debian's Chromium: the tile map's browser test and make demo's screenshots of it (needs root or sudo)
chromium:
	@command -v chromium >/dev/null || { \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get install -y --no-install-recommends chromium >/dev/null \
		|| { $$SUDO apt-get update >/dev/null && $$SUDO apt-get install -y --no-install-recommends chromium >/dev/null; }; }
	@command -v chromium >/dev/null || { echo "Chromium is missing: apt-get install chromium"; exit 1; }

demo: $(STAMP) chromium
	$(RUN) -m dev.demo

# Lint and the security scan, the fast unit tests (no database, no subprocess; they fail fast), then
# the integration tests (real clients, emulator, real Airflow processes) and the system tests (fresh
# installs: make compat) on three workers: two queues of whole Airflow deployments side by side and
# one for the rest (tests/conftest.py, HEAVY_QUEUES).
test: lint $(STAMP) chromium
	$(VENV)/bin/pytest tests/unit -x -q
	$(VENV)/bin/pytest packages/gee-emulator/tests -x -q
	$(VENV)/bin/pytest -n 3 --dist loadgroup tests/integration tests/system

# The inner loop, under five minutes: lint, the unit tests, and the integration tests that run no
# whole DAG and build no virtualenv (not marked slow), on three workers (they wait on the emulator
# much of the time).
check: lint
	$(VENV)/bin/pytest tests/unit -x -q
	$(VENV)/bin/pytest packages/gee-emulator/tests -x -q
	$(VENV)/bin/pytest -n 3 -m "not slow" -q tests/integration

# The wheel in fresh virtualenvs: only Airflow (oldest supported, newest pinned), then the provider.
compat: $(STAMP)
	$(RUN) -m dev.compat_check

# sdist and wheel of both distributions under dist/, checked by twine.
dist: $(STAMP)
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(PY) -m build --outdir dist packages/gee-emulator
	$(VENV)/bin/twine check --strict dist/*

# All benchmarks, one after the other (about three hours on 2 cores, two of them B5); JSON under benchmarks/results/.
bench: $(STAMP)
	$(RUN) benchmarks/tiling.py
	$(RUN) benchmarks/triggers.py
	$(RUN) benchmarks/evaluation.py
	$(RUN) benchmarks/harvest.py
	$(RUN) benchmarks/mosaic.py
	$(RUN) benchmarks/orchestration.py
	$(RUN) benchmarks/scale.py --deployment both
	$(RUN) benchmarks/summary.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/bandit -q -c pyproject.toml -r src packages/gee-emulator/src
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Re-resolve the pinned set after changing pyproject.toml's dependencies.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e 'packages/gee-emulator[gcs]' -e '.[dev,emulator]'
	.lock-venv/bin/pip freeze --exclude-editable | grep -vE "^(airflow-provider-gee|gee-emulator)" > requirements/constraints.txt
	rm -rf .lock-venv

# Re-resolve the oldest supported set (requirements/constraints-oldest.txt) after changing a lower
# bound in pyproject.toml or requirements/oldest.in: uv's lowest-direct resolution.
lock-oldest: $(STAMP)
	$(RUN) -m dev.compat_check --lock-oldest

emulator: $(STAMP)
	$(VENV)/bin/gee-emulator --print-connection

clean:
	rm -rf $(VENV) demo-output .pytest_cache build dist
