# The two commands of the README: `make demo` and `make test`. Each creates (or reuses)
# the virtual environment in $(VENV) and installs the package with the extras it needs.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# Spin-waiting OpenMP threads slow forwards down badly on a shared machine.
export OMP_WAIT_POLICY ?= PASSIVE
export MPLBACKEND ?= Agg

.PHONY: demo test lint typecheck pytest bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.demo-installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[demo]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

$(VENV)/.bench-installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[bench]'
	touch $@

demo: $(VENV)/.demo-installed
	$(PY) -m captum_medcam.cli demo --output demo_output

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check captum_medcam tests tutorials benchmarks
	$(PY) -m ruff format --check captum_medcam tests tutorials benchmarks

typecheck: $(VENV)/.dev-installed
	$(PY) -m mypy

# The report's render test needs Chromium: found, or installed with apt-get when run as root.
pytest: $(VENV)/.dev-installed
	sh scripts/ensure-chromium.sh
	$(PY) -m pytest

test: lint typecheck pytest

bench: $(VENV)/.bench-installed
	for script in benchmarks/bench_*.py benchmarks/localization_sanity.py; do \
		PYTHONPATH=. $(PY) $$script --quick || exit 1; \
	done

clean:
	rm -rf $(VENV) demo_output .pytest_cache .mypy_cache .ruff_cache
