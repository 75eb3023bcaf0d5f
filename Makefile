# Two commands from a fresh clone: `make up` (run the whole system) and `make test`.
PYTHON ?= python3
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

PACKAGES := -p crm_schemas -p crm_eventstore -p crm_http -p crm_cli -p crm_contacts -p crm_deals -p crm_support -p crm_projections

.PHONY: install up test check bench schemas lint typecheck deploy-check clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: $(UV) pyproject.toml */pyproject.toml */*/pyproject.toml
	$(UV) sync --all-packages --python $(PYTHON)
	touch $@

install: $(VENV)/.installed

up: install
	$(BIN)/crm up

test: install
	$(BIN)/python -m pytest

schemas: install
	$(BIN)/python -m crm_schemas.generate

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy $(PACKAGES)

# checkov pins packages that conflict with the workspace's (pydantic, packaging): its own venv.
CHECKOV_VERSION := 3.3.30
CHECKOV := $(TOOLS)/checkov/bin/checkov

$(CHECKOV): $(UV)
	$(UV) venv --quiet --python $(PYTHON) $(TOOLS)/checkov
	$(UV) pip install --quiet --python $(TOOLS)/checkov/bin/python checkov==$(CHECKOV_VERSION)

deploy-check: install $(CHECKOV)
	CHECKOV=$(CHECKOV) $(BIN)/python deploy/tools/check_manifests.py
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_deploy_manifests.py

check: lint typecheck deploy-check
	$(BIN)/lint-imports
	$(BIN)/python -m crm_schemas.generate --check

bench: install
	$(BIN)/python bench/append.py
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/dedupe.py
	$(BIN)/python bench/import_customers.py
	$(BIN)/python bench/query.py
	$(BIN)/python bench/query_search.py
	$(BIN)/python bench/rebuild.py

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
