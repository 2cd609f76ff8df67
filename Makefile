# figalign: two commands do all set-up on a fresh machine.
#   make test   - create .venv if missing, install, migrate a throwaway database, run the suite
#   make demo   - create .venv if missing and run the pipeline on embedded defaults
#   make airflow - airflow standalone with the project's DAGs (AIRFLOW_HOME=./airflow_home)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.figalign-installed
PG_ADMIN_URL ?= postgresql+psycopg2://postgres@127.0.0.1:5432/postgres
PYTEST_ARGS ?=
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export AIRFLOW__CORE__LOAD_EXAMPLES := False

.PHONY: install test demo airflow bench eval clean-data

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	@bash .ci/system_deps.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=24"
	$(BIN)/pip install -r requirements.txt -c constraints.txt
	$(BIN)/pip install -q --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	@bash .ci/system_deps.sh
	@bash .ci/ensure_postgres.sh
	@set -euo pipefail; \
	 db="figalign_make_$$$$"; url="$${PG_ADMIN_URL:-$(PG_ADMIN_URL)}"; base="$${url%/*}"; \
	 $(BIN)/python -m figalign.devtools.pgdb create "$$url" "$$db"; \
	 trap '$(BIN)/python -m figalign.devtools.pgdb drop "$$url" "$$db"' EXIT; \
	 FIGALIGN_DATABASE_URL="$$base/$$db" $(BIN)/figalign db upgrade; \
	 FIGALIGN_DATABASE_URL="$$base/$$db" $(BIN)/figalign db check; \
	 FIGALIGN_TEST_PG_URL="$$url" FIGALIGN_TEST_REQUIRE_PG=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m figalign.demo

airflow: $(STAMP)
	$(BIN)/python -m figalign.devtools.standalone

bench: $(STAMP)
	@for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

eval: $(STAMP)
	@mkdir -p data/eval
	$(BIN)/python ../shared/eval/score_parse.py ../shared/corpus --cmd "$(BIN)/figalign parse" --json data/eval/score.json

clean-data:
	rm -rf data airflow_home
