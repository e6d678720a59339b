# The two commands: `make demo` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_ROOT ?= $(CURDIR)/demo-data
export OPENBLAS_NUM_THREADS := 1
export GX_ANALYTICS_ENABLED := false

.PHONY: setup demo test test-all lint bench java-check clean

setup: $(STAMP) java-check

$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "recs needs Python 3.11+, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $(STAMP)

java-check:
	@command -v java >/dev/null 2>&1 || { echo "recs needs Java 17+ for Spark: apt-get install openjdk-17-jre-headless (or set JAVA_HOME)"; exit 1; }
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	 [ "$${v:-0}" -ge 17 ] || { echo "recs needs Java 17+ for Spark, found $$v"; exit 1; }

demo: setup
	$(BIN)/python -m jobs.demo --data-root $(DEMO_ROOT)

# two workers, each with its own local Spark session; --dist loadfile keeps a module (and its fixtures) on one
test: setup
	$(BIN)/python -m pytest -m "not slow" -q -n 2 --dist loadfile --durations=20

test-all: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check dags jobs quality schemas bench tests

bench: setup
	$(BIN)/python bench/bench_pipeline.py

clean:
	rm -rf $(VENV) $(DEMO_ROOT) .airflow
