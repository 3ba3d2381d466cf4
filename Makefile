# gpucensus: `make demo` runs the main job, `make test` the test suite; both set up what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint bench bench-scale fuzz soak protos tools clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

tools:
	@bash scripts/ensure-tools.sh

demo: $(STAMP) tools
	@bash scripts/demo.sh

test: $(STAMP) tools lint
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Benchmarks (never part of `make test`): figures with their ratios to limits measured in the same run, written
# to tests/bench/RESULTS.md. `bench-scale` adds the 100,000-node stores.
bench: $(STAMP) tools
	$(BIN)/python tests/bench/run.py

bench-scale: $(STAMP) tools
	$(BIN)/python tests/bench/run.py --scale

fuzz: $(STAMP) tools
	GPUCENSUS_FUZZ=1 $(BIN)/pytest -q -p no:cacheprovider -m fuzz

soak: $(STAMP) tools
	GPUCENSUS_SOAK=long $(BIN)/pytest -q -p no:cacheprovider -s -m soak

protos: $(STAMP)
	$(BIN)/python protos/generate.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
