# One entry point for the common tasks. Everything runs offline against moto; nothing needs AWS or Docker.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CHECKOV_VENV ?= .venv-checkov
BENCH_VENV ?= bench/.venv
ARGS ?=

STACK ?=

.PHONY: install test run lint build deploy integration bench clean

$(VENV)/.installed: requirements-dev.txt functions/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

install: $(VENV)/.installed $(CHECKOV_VENV)/.installed

test: install  ## the full offline test suite (includes cfn-lint, checkov, sam validate --lint and ASL checks)
	CHECKOV=$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest -q tests

run: install  ## mirror BLS through the real state machine locally: make run ARGS="--contact-email you@example.com"
	$(PY) -m local_runner $(ARGS)

lint: install
	$(VENV)/bin/cfn-lint --include-checks I -- template.yaml
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --skip-download --compact
	AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam validate --lint

build: install  ## sam build needs python3.13 on PATH (pyenv: PYENV_VERSION=3.11.7:3.12.1:3.13.0)
	SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam build

deploy: install  ## checks the stack name (STACK, default bls-mirror) against the template's name limits, then sam deploy --guided
	$(PY) -m deploy.preflight $(or $(STACK),bls-mirror)
	SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam deploy --guided --stack-name $(or $(STACK),bls-mirror)

integration:  ## the integration tests against a deployed stack: make integration STACK=<name> (AWS credentials)
	@if [ -z "$(STACK)" ]; then echo "integration: skipped: no stack given (make integration STACK=<your deployed stack name>)"; \
	else $(MAKE) --no-print-directory install >/dev/null && $(PY) -m tests.integration "$(STACK)"; fi

$(BENCH_VENV)/.installed: bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt
	touch $@

bench: $(BENCH_VENV)/.installed  ## benchmarks against rclone and a naive script (not tests): make bench ARGS=--quick
	$(BENCH_VENV)/bin/python -m bench $(ARGS)

clean:
	rm -rf .aws-sam .pytest_cache
