# reachlive: `make demo` and `make test` need only Python >= 3.11 and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test test-min demo lint bench clean install fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# The suite on the lowest version of every runtime dependency pyproject.toml allows (its `>=`
# bounds), in a venv of its own: each lower bound is a version the tests ran with. Transitive
# dependencies and the test tools are whatever pip picks today. MIN_TESTS narrows the run.
MIN_VENV  ?= .venv-min
MIN_TESTS ?=
test-min: $(STAMP)
	rm -rf $(MIN_VENV)
	$(PYTHON) -m venv $(MIN_VENV)
	$(BIN)/python tools/min_constraints.py pyproject.toml > $(MIN_VENV)/constraints.txt
	$(MIN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MIN_VENV)/bin/python -m pip install --quiet -c $(MIN_VENV)/constraints.txt -e '.[dev]'
	$(MIN_VENV)/bin/python -m pip check
	@echo "== pinned to their lower bounds:" && cat $(MIN_VENV)/constraints.txt
	$(MIN_VENV)/bin/python -m pytest $(MIN_TESTS)

# Property tests with fresh random examples (make test runs a fixed, repeatable set).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -p no:cacheprovider \
		$$(grep -rl --include='test_*.py' 'from hypothesis' tests)

demo: $(STAMP)
	$(BIN)/reachlive demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	@set -e; for script in bench/[!_]*.py; do \
		echo "== $$script"; $(BIN)/python $$script; \
	done

clean:
	rm -rf $(VENV) $(MIN_VENV) .reachlive .pytest_cache build *.egg-info
