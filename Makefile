# cdimlab — every target creates .venv on first use and installs the project into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cdimlab-installed
PROFILE ?= smoke
DATA   ?= data
PYTEST_ARGS ?=

.PHONY: setup test test-fast reproduce lab lint format bench data clean-results

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install cdimlab with its dev tools

test: $(STAMP)  ## all tests: package, data scripts, CLI, notebooks (nbval, smoke profile), browser check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)  ## package tests only (no notebooks, no browser)
	$(BIN)/python -m pytest tests -m "not browser" $(PYTEST_ARGS)

reproduce: $(STAMP)  ## the main job: every table of the paper (3-11), paper vs here, into results/
	$(BIN)/python -m cdimlab reproduce --profile $(PROFILE) --data $(DATA)

bench: $(STAMP)  ## throughput table: model-only vs trainer img/s, ranking time at Market scale
	$(BIN)/python -m cdimlab bench

data: $(STAMP)  ## synthetic stand-ins (always) into $(DATA)/synthetic
	$(BIN)/python data_scripts/make_synthetic.py --out $(DATA)/synthetic

lab: $(STAMP)  ## open the course in JupyterLab
	$(BIN)/jupyter lab notebooks

lint: $(STAMP)
	$(BIN)/ruff check cdimlab tests data_scripts
	$(BIN)/ruff format --check cdimlab tests data_scripts

format: $(STAMP)
	$(BIN)/ruff format cdimlab tests data_scripts
	$(BIN)/ruff check --fix cdimlab tests data_scripts

clean-results:
	rm -rf results/smoke
