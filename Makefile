# picflow: `make demo` runs the main job offline, `make test` runs every check.
# Both set up .venv first (python3.12, the Lambda runtime) when it is missing or stale.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# python3.12 from PATH if it really runs (a pyenv shim may exist but fail), else from pyenv.
PYTHON312 := $(shell \
	if python3.12 -c '' >/dev/null 2>&1; then command -v python3.12; \
	elif command -v pyenv >/dev/null 2>&1 && ls -d "$$(pyenv root)"/versions/3.12.*/bin/python3.12 >/dev/null 2>&1; then \
		ls -d "$$(pyenv root)"/versions/3.12.*/bin/python3.12 | sort -V | tail -n 1; \
	fi)

SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_VERSION := 1.170.0
export SAM_CLI_TELEMETRY := 0
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
CHECKOV_VERSION := 3.3.30

.PHONY: setup browser test lint typecheck unit unit-fast unit-e2e demo build clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON312)" || { echo "python3.12 not found (PATH or pyenv): install it, e.g. 'pyenv install 3.12'" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON312) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# aws-sam-cli pins its own boto3: it gets a venv of its own.
$(SAM):
	@test -n "$(PYTHON312)" || { echo "python3.12 not found (PATH or pyenv)" >&2; exit 1; }
	$(PYTHON312) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet "aws-sam-cli==$(SAM_VERSION)"

# checkov pins much of its own world (boto3, pydantic...): a venv of its own too. It runs with
# --skip-download: nothing leaves the machine (no Prisma Cloud guidelines).
$(CHECKOV):
	@test -n "$(PYTHON312)" || { echo "python3.12 not found (PATH or pyenv)" >&2; exit 1; }
	$(PYTHON312) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet "checkov==$(CHECKOV_VERSION)"

# The demo report's test opens it in Debian's headless Chromium.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium (for the report test)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The npm validators (asl-validator, redocly), exactly as package-lock.json pins them.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

# The five installs are independent and mostly wait on the network: run them side by side.
setup:
	@$(MAKE) --no-print-directory -j5 $(STAMP) $(SAM) $(CHECKOV) browser node_modules/.installed

# lint-imports keeps the layer's imports flowing one way (pyproject's [tool.importlinter]).
# `picflow validate` judges what AWS would reject: cfn-lint on the template and on its
# SAM-transformed form (a cycle through AWS::Serverless::* types shows only there),
# asl-validator on the state machines, redocly on the API document.
# Each check is a target of its own: they are independent, so `make -j` runs them side by side
# (--output-sync keeps each one's output together).
LINTS := lint-ruff lint-imports lint-validate lint-sam lint-checkov
SIDE_BY_SIDE := $(MAKE) --no-print-directory -j3 --output-sync=target

.PHONY: $(LINTS)
lint: setup
	@$(SIDE_BY_SIDE) $(LINTS)

lint-ruff:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

lint-imports:
	$(BIN)/lint-imports

lint-validate:
	$(BIN)/picflow validate

lint-sam:
	$(SAM) validate --lint

lint-checkov:
	$(CHECKOV) -f template.yaml --framework cloudformation --quiet --compact --skip-download

typecheck: setup
	$(BIN)/mypy layers/picflow/picflow mock_upstream cli/picflow_cli functions

# Two runs: the e2e tier deploys the local stack, which points this process's AWS
# environment at its moto server; the other tiers must not see that.
# The fast tiers on every core (pytest-xdist). The e2e tier runs E2E_WORKERS workers whatever the
# cores, each with its own local stack: its tests mostly wait (on the mock's renders, on Step
# Functions' real-time timers and retry intervals, on deadlines): the whole tier is ~255 CPU-s, and
# it took 270 s alone on a quiet 2-core machine (docs/performance.md section 7). Its tests go out
# one at a time, the slow ones first (tests/conftest.py), so no worker ends the run alone on a
# long one.
E2E_WORKERS ?= 3

unit: setup
	@$(MAKE) --no-print-directory unit-fast
	@$(MAKE) --no-print-directory unit-e2e

unit-fast:
	$(BIN)/pytest -q -n auto --maxprocesses=4 -m "not e2e"

unit-e2e:
	$(BIN)/pytest -q -n $(E2E_WORKERS) --maxschedchunk=1 -m e2e

# The e2e tier, the longest, from the start; beside it, at a lower priority, the lints, mypy and
# the fast tiers (none waits for another): they fill the cores while the e2e tier's jobs wait,
# and give way when its jobs run (their timers are real time). Beside other busy processes, the
# lower priority makes them slow there: `make lint typecheck unit` runs all at full priority.
test: setup
	@$(MAKE) --no-print-directory -j2 --output-sync=target unit-e2e test-background

.PHONY: test-background
test-background:
	@nice -n 10 $(SIDE_BY_SIDE) $(LINTS) typecheck unit-fast

# sam build, its output compiled to bytecode (Lambda cannot write __pycache__), every validator:
# `picflow deploy --dry-run` (it finds a python3.12 that runs, as sam build needs).
build: setup
	$(BIN)/picflow deploy --dry-run

demo: $(STAMP)
	$(BIN)/picflow demo

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .aws-sam .mypy_cache .ruff_cache .pytest_cache out
