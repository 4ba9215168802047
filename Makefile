# The commands a new user types. Every target sets up .venv first if needed.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip -q --disable-pip-version-check
STAMP := $(VENV)/.installed
export MPLBACKEND ?= Agg
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup reproduce test lab docs data bench export-check clean-check nbtest pytest docs-check bench-quick readme

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip  # a current pip builds sdists such as seqeval through PEP 517
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install -e ".[dev]"
	$(PIP) install --no-deps torch-struct==0.5  # its metadata pins an old torch; it works with ours
	touch $(STAMP)

reproduce: setup
	$(BIN)/alignnb-reproduce

# Test output stays readable: no progress bars (ours follow ALIGNNB_QUIET, transformers' follow the hub's switch).
test export-check clean-check nbtest pytest docs-check bench-quick: export ALIGNNB_QUIET = 1
test export-check clean-check nbtest pytest docs-check bench-quick: export HF_HUB_DISABLE_PROGRESS_BARS = 1

# `make test`: library in sync with the notebooks, notebooks clean, notebooks run, pytest, docs, quick benchmarks.
test: setup export-check clean-check nbtest pytest docs-check bench-quick
	@echo "make test: all checks passed"

# Hash the tree before and after, so the check works on uncommitted work too (not only against git HEAD).
define tree_hash
find $(1) -type f \( -name '*.py' -o -name '*.ipynb' -o -name '*.yml' \) -not -path '*/__pycache__/*' -not -path '*/.ipynb_checkpoints/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum
endef

export-check: setup
	@before=$$($(call tree_hash,alignnb)); $(BIN)/nbdev-export; after=$$($(call tree_hash,alignnb)); \
	if [ "$$before" != "$$after" ]; then echo "nbdev-export changed alignnb/: the library is out of sync with nbs/ (run nbdev-export and commit)"; exit 1; fi; \
	echo "export-check: alignnb/ is what the notebooks export"

clean-check: setup
	@before=$$($(call tree_hash,nbs)); $(BIN)/nbdev-clean; after=$$($(call tree_hash,nbs)); \
	if [ "$$before" != "$$after" ]; then echo "nbdev-clean changed nbs/: notebooks were committed unclean (run nbdev-clean and commit)"; exit 1; fi; \
	echo "clean-check: notebooks are clean"

nbtest: setup
	$(BIN)/nbdev-test --n-workers 2 --timing

pytest: setup
	$(BIN)/pytest tests/ -q

docs-check: setup
	$(BIN)/alignnb-docs check

bench-quick: setup
	@shopt -s nullglob; for b in benchmarks/bench_*.py; do echo "== $$b --quick"; $(BIN)/python $$b --quick; done

bench: setup
	@shopt -s nullglob; for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

readme: setup
	$(BIN)/alignnb-docs readme

lab: setup
	$(BIN)/jupyter lab nbs/ $$([ "$$(id -u)" = 0 ] && echo --allow-root)  # JupyterLab refuses root without it

docs: setup
	$(BIN)/nbdev-export
	$(BIN)/alignnb-docs build

data: setup
	$(BIN)/python -c "from alignnb.lm import make_data; make_data()"
