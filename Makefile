# Everything bootstraps .venv first, so each target works on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv demo test lint bench clean

$(BIN)/gnomon: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/gnomon

# The main job: scheduler + dashboard with the bundled examples, on SQLite and local Ray.
demo: venv
	$(BIN)/gnomon up --examples

# Installs what the tests need (Chromium, the PostgreSQL role), then lint, types, tests:
# two at a time, then alone the few that restart PostgreSQL under everyone's connections.
test: venv
	bash .ci/setup-system.sh
	bash .ci/setup-postgres.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -m "not exclusive" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -q -m exclusive $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) build *.egg-info
