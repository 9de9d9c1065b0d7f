# Two commands from a fresh clone: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format clean

install: $(STAMP)

# torch goes in first and pinned: an unpinned torch (pulled by monai) would fetch a multi-GB CUDA build.
$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

demo: install
	bash swin_brats_bundle/scripts/demo.sh

test: install
	$(PY) -m ruff check swin_brats_bundle classification_bundle tests ci bench
	$(PY) -m ruff format --check swin_brats_bundle classification_bundle tests ci bench
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check swin_brats_bundle classification_bundle tests ci bench

format: install
	$(PY) -m ruff format swin_brats_bundle classification_bundle tests ci bench
	$(PY) -m ruff check --fix swin_brats_bundle classification_bundle tests ci bench

clean:
	rm -rf $(VENV) .pytest_cache demo_output
