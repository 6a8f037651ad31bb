# Two commands for a new user: `make demo` and `make test`. Both create .venv and install on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The stamp is rebuilt whenever the declared dependencies or the pins change.
STAMP := $(VENV)/.installed
# Never reach a model hub from the demo or the tests: fail fast instead of retrying for a minute.
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: install demo lint test test-all clean-cache

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

# The whole pipeline on the embedded synthetic faces: data summary, VAE-GAN, augmentation,
# and a reduced ablation (5 rows x 1 seed); prints the table and the path of report.html.
demo: $(STAMP)
	$(PY) scripts/data_summary.py
	$(PY) scripts/ablate.py experiment=demo

# Style first (seconds): lint rules and formatting as pyproject.toml [tool.ruff] states them.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest

# Includes tests marked `slow` (longer CPU runs kept out of CI).
test-all: $(STAMP)
	$(PY) -m pytest -m ''

clean-cache:
	rm -rf .cache
