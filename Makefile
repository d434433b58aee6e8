PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install test lint bench demo clean

install: $(BIN)/mmcli

$(BIN)/mmcli: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,parquet,dask]'
	$(BIN)/python -m compileall -q mmcli  # bytecode written once, even where PYTHONDONTWRITEBYTECODE is set
	@touch $(BIN)/mmcli
	@echo "installed: $(BIN)/mmcli  (activate with: source $(BIN)/activate)"

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check mmcli tests bench
	$(BIN)/ruff format --check mmcli tests bench
	$(BIN)/mypy

bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m compileall -q mmcli
	$(BIN)/python bench/run.py

demo: install
	$(BIN)/mmcli fit sample_data/sleepstudy.csv --y Reaction --fixed Days --group Subject

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
