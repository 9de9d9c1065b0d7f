# Two commands from a fresh clone: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install deploy-install label-install demo test test-bundles test-apps zoo-check package bench brats-eval-bench lint format sync-hooks clean

install: $(STAMP)

# torch goes in first and pinned: an unpinned torch (pulled by monai) would fetch a multi-GB CUDA build.
$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

# The MONAI Deploy app's own environment (deploy/README.md): the SDK pulls Holoscan, so it stays out of .venv.
DEPLOY_VENV := deploy/.venv
DEPLOY_PY := $(DEPLOY_VENV)/bin/python
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed

deploy-install: $(DEPLOY_STAMP)

$(DEPLOY_STAMP): deploy/requirements.txt
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_PY) -m pip install --quiet --upgrade pip
	$(DEPLOY_PY) -m pip install --quiet --no-compile $(TORCH_PIN)
	$(DEPLOY_PY) -m pip install --quiet --no-compile -r deploy/requirements.txt
	touch $(DEPLOY_STAMP)

# MONAI Label's environment (label/README.md): monailabel 0.8.5 with its torch/torchvision pair and pydicom<3, every
# package pinned in label/requirements.txt and installed without pip's resolver (monailabel declares sam2, unused).
LABEL_VENV := label/.venv
LABEL_PY := $(LABEL_VENV)/bin/python
LABEL_STAMP := $(LABEL_VENV)/.installed

label-install: $(LABEL_STAMP)

$(LABEL_STAMP): label/requirements.txt
	$(PYTHON) -m venv $(LABEL_VENV)
	$(LABEL_PY) -m pip install --quiet --upgrade pip
	$(LABEL_PY) -m pip install --quiet --no-compile --no-deps -r label/requirements.txt
	touch $(LABEL_STAMP)

demo: install
	bash swin_brats_bundle/scripts/demo.sh

LINTED := $(wildcard swin_brats_bundle classification_bundle tests ci bench deploy label)

# Model-zoo checks of both bundles (ci/README.md lists them); BASE_REF=origin/main also requires a version bump of
# every bundle whose files differ from that ref.
BUNDLES := swin_brats_bundle classification_bundle
BASE_REF ?=
OUT ?= dist

# Both bundle suites in one pytest session (tests/conftest.py; the classifier's tests swap in its own `scripts`
# package), spread over TEST_WORKERS processes a file at a time (pytest-xdist): most tests wait on single-threaded
# process start-up, so two workers on 2 cores finish sooner than one; TEST_WORKERS=0 runs it in one process.
# tests/deploy and tests/label run in their apps' environments, their `run inference` references in .venv.
# The apps' environments install and their suites run (one after the other) while the bundle suites run: the installs
# wait on downloads, and the two streams fill each other's idle time; output is kept whole line by line.
TEST_WORKERS ?= 2
test: lint zoo-check
	$(MAKE) --no-print-directory --output-sync=line -j 2 test-bundles test-apps

test-bundles: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations 25

test-apps: deploy-install label-install
	@echo "== pytest tests/deploy"; $(DEPLOY_PY) -m pytest tests/deploy --durations 5
	@echo "== pytest tests/label"; $(LABEL_PY) -m pytest tests/label --durations 5

zoo-check: install
	$(PY) ci/check_bundle.py $(BUNDLES) $(if $(BASE_REF),--base-ref $(BASE_REF))

# Release zips <bundle>_v<version>.zip in $(OUT): source files only (no weights, eval/, datalists, caches).
package: install
	$(PY) ci/package_bundle.py --out $(OUT) $(BUNDLES)

# Segmentation speed benchmarks (bench/README.md); each prints JSON and writes bench/results/swin_brats_*.json.
bench: install
	cd bench/swin_brats && ../../$(PY) training.py && ../../$(PY) inference.py && ../../$(PY) scaling.py --with_reference

# Scoring parity with the official BraTS evaluation (bench/brats_eval/README.md): the brats-evaluation package (AGPL)
# in an environment of its own, run only as a subprocess; writes bench/results/brats_eval_parity.json.
BRATS_EVAL_VENV := bench/brats_eval/.venv
BRATS_EVAL_STAMP := $(BRATS_EVAL_VENV)/.installed

$(BRATS_EVAL_STAMP): bench/brats_eval/requirements.txt
	$(PYTHON) -m venv $(BRATS_EVAL_VENV)
	$(BRATS_EVAL_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BRATS_EVAL_VENV)/bin/python -m pip install --quiet -r bench/brats_eval/requirements.txt
	touch $(BRATS_EVAL_STAMP)

brats-eval-bench: install $(BRATS_EVAL_STAMP)
	$(PY) bench/brats_eval/parity.py --evaluation_python $(BRATS_EVAL_VENV)/bin/python

# The hooks both bundles carry (ci/shared_hooks.py lists them): swin_brats_bundle/scripts is the source.
sync-hooks: install
	$(PY) ci/shared_hooks.py --copy

lint: install
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)

format: install
	$(PY) -m ruff format $(LINTED)
	$(PY) -m ruff check --fix $(LINTED)

clean:
	rm -rf $(VENV) .pytest_cache demo_output
