# One command for everything a developer does. Each target creates .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: install serve test test-postgres lint format audit ci bench bench-reports bench-quick bench-http model

$(BIN)/bedside: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/bedside

serve: install
	BEDSIDE_INSECURE_DEV_AUTH=true $(BIN)/bedside serve

test: install
	$(BIN)/python -m pytest

test-postgres: install
	BEDSIDE_TEST_DATABASE_URL=$(POSTGRES_URL) $(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Known vulnerabilities in the installed packages (PIP_AUDIT_REQUIRED=true: fail if none could be audited).
audit: install
	$(BIN)/python .ci/pip_audit.py

ci:
	bash .ci/run

# Everything: the in-process benchmarks, then end to end over HTTP (about 17 minutes in all).
bench: bench-quick bench-http

# Mapping, prediction and the audit store in-process (a minute or two).
bench-quick: install
	BEDSIDE_FHIR_SAMPLES=$${BEDSIDE_FHIR_SAMPLES:-../shared/fhir-samples} $(BIN)/python -m benchmarks.bench_mapping
	BEDSIDE_FHIR_SAMPLES=$${BEDSIDE_FHIR_SAMPLES:-../shared/fhir-samples} $(BIN)/python -m benchmarks.bench_predict
	$(BIN)/python -m benchmarks.bench_audit

# End to end over HTTP (bedside serve --workers 2, SQLite and PostgreSQL, JWT-signed calls) with
# a 10-minute RSS soak: about 15 minutes. BENCH_SOAK_SECONDS=60 for a shorter run; results in
# docs/performance.md.
bench-http: install
	BEDSIDE_FHIR_SAMPLES=$${BEDSIDE_FHIR_SAMPLES:-../shared/fhir-samples} $(BIN)/python -m benchmarks.bench_http

# Seeds a million predictions first (several minutes); BENCH_REPORT_PREDICTIONS for fewer.
bench-reports: install
	$(BIN)/python -m benchmarks.bench_reports

# Rebuild the bundled demo package from a fresh synthetic cohort (deterministic by seed).
DEMO_PATIENTS ?= 2500
model: install
	$(BIN)/bedside synth --patients $(DEMO_PATIENTS) --seed 42 --out var/demo-cohort
	$(BIN)/bedside train --data var/demo-cohort --spec fhir_mappers/specs/readmission_30d.yaml \
		--out app/models/bundled/readmission-30d --seed 42
