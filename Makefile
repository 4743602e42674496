# One entry point for the common tasks. Everything runs offline against moto; nothing needs AWS or Docker.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CHECKOV_VENV ?= .venv-checkov
BENCH_VENV ?= bench/.venv
ARGS ?=

STACK ?=
DATABASE ?=

.PHONY: install test test-fast test-engine test-tools run serve notebook sql lint build deploy deployer-policies integration bench clean

# Layers in one virtualenv: `make run` installs only what running needs, `make notebook` adds Jupyter's kernel and
# matplotlib, `make sql` adds DuckDB, `make test` adds all of those and the test and check tools.
$(VENV)/.run-installed: requirements-run.txt functions/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-run.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(VENV)/.notebook-installed: $(VENV)/.run-installed requirements-notebook.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-notebook.txt
	touch $@

$(VENV)/.sql-installed: $(VENV)/.run-installed requirements-sql.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-sql.txt
	touch $@

$(VENV)/.installed: $(VENV)/.notebook-installed $(VENV)/.sql-installed requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

install: $(VENV)/.installed $(CHECKOV_VENV)/.installed

test: install  ## the full offline test suite (includes cfn-lint, checkov, sam validate --lint and ASL checks)
	CHECKOV=$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest -q tests

# The suite's three tiers (tests/tiers.py gives each test one); `make test` runs all of them.
test-fast: $(VENV)/.installed  ## the unit tier: no engine, no checkers; under a minute
	$(PY) -m pytest -q -m unit tests

test-engine: $(VENV)/.installed  ## the engine tier: the real state machine in the local engine, against the loopback source
	$(PY) -m pytest -q -m engine tests

test-tools: install  ## the tools tier: cfn-lint, checkov and sam validate --lint on the template
	CHECKOV=$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest -q -m tools tests

run: $(VENV)/.run-installed  ## mirror BLS through the real state machine locally: make run ARGS="--contact-email you@example.com"
	$(PY) -m local_runner $(ARGS)

serve: $(VENV)/.run-installed  ## a BLS-like directory and population API on 127.0.0.1:8321, for offline runs: make serve [ARGS="--directory DIR"]
	$(PY) -m bls_loopback $(ARGS)

notebook: $(VENV)/.notebook-installed  ## execute notebooks/reports.ipynb on a run's files: make notebook [ARGS="--state-dir DIR | --bucket s3://BUCKET"]
	$(PY) -m local_runner.notebook $(ARGS)

sql: $(VENV)/.sql-installed  ## query a run's mirror with the Athena SQL in DuckDB: make sql ARGS="--list | --query best_year | --sql 'SELECT ...' | --find WORDS [--format csv|json] [--state-dir DIR]"
	$(PY) -m local_runner.sql $(ARGS)

lint: install  ## cfn-lint, checkov and sam validate --lint; quiet when clean
	@$(VENV)/bin/cfn-lint --include-checks I -- template.yaml && echo "cfn-lint: clean"
	@$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --skip-download --compact --quiet > .checkov.out \
		&& echo "checkov: clean" || { cat .checkov.out; rm -f .checkov.out; exit 1; }
	@rm -f .checkov.out
	@AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam validate --lint

build: $(VENV)/.installed  ## sam build with the project's SAM CLI and a Python 3.13 it finds (deploy/python313.sh)
	@python313="$$(deploy/python313.sh)" && echo "build: Python 3.13 at $$python313" \
		&& PATH="$$(dirname "$$python313"):$$PATH" SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam build \
		&& echo "build: the functions and template are in .aws-sam/build/; next: make deploy"

deploy: build  ## checks the stack name (STACK, default bls-mirror) against the template's name limits, then sam deploy --guided
	$(PY) -m deploy.preflight $(or $(STACK),bls-mirror)
	SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam deploy --guided --stack-name $(or $(STACK),bls-mirror)

deployer-policies: $(VENV)/.run-installed  ## the deployer's IAM policies for a stack: make deployer-policies STACK=<name> [DATABASE=<CatalogDatabase>]
	$(PY) -m deploy.deployer_policies $(or $(STACK),bls-mirror) $(DATABASE)

integration:  ## the integration tests against a deployed stack: make integration STACK=<name> (AWS credentials)
	@if [ -z "$(STACK)" ]; then echo "integration: skipped: no stack given (make integration STACK=<your deployed stack name>)"; \
	else $(MAKE) --no-print-directory install >/dev/null && $(PY) -m tests.integration "$(STACK)"; fi

$(BENCH_VENV)/.installed: bench/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

bench: $(BENCH_VENV)/.installed  ## benchmarks against rclone and a naive script (not tests): make bench ARGS=--quick; report in bench/.last-run.md, into bench/RESULTS.md only with ARGS="... --write-results"
	$(BENCH_VENV)/bin/python -m bench $(ARGS)

clean:
	rm -rf .aws-sam .pytest_cache
