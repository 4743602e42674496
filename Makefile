# One entry point for the common tasks. Everything runs offline against moto; nothing needs AWS or Docker.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: install test run lint build clean

$(VENV)/.installed: requirements-dev.txt functions/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

test: install  ## the full offline test suite (includes cfn-lint, sam validate --lint and ASL checks)
	$(PY) -m pytest -q tests

run: install  ## mirror BLS through the real state machine locally: make run ARGS="--contact-email you@example.com"
	$(PY) -m local_runner $(ARGS)

lint: install
	$(VENV)/bin/cfn-lint template.yaml
	AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam validate --lint

build: install  ## sam build needs python3.13 on PATH (pyenv: PYENV_VERSION=3.11.7:3.12.1:3.13.0)
	SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam build

clean:
	rm -rf .aws-sam .pytest_cache
