# diffusion-lite: two commands for a newcomer
#   make demo   - create .venv, install the package with all extras, run `diffusion-lite demo`
#   make test   - the whole test suite: package tests + every notebook under nbval (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
# EXTRAS=notebooks installs only what reading the course needs (not the tests, diffusers or transformers);
# TORCH_INDEX=https://download.pytorch.org/whl/cpu installs PyTorch's CPU-only build first (Linux: ~1 GB
# instead of ~6 GB of CUDA libraries; the CPU build is the same code, it just cannot use a GPU)
EXTRAS ?= all
TORCH_INDEX ?=
# THREADS=1 runs the demo on one torch thread (default: all cores), often faster while other work is running
THREADS ?=
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test test-fast test-notebooks test-min install lint notebooks sync clean check-dev

demo: $(STAMP)
	$(BIN)/diffusion-lite demo $(if $(THREADS),--threads $(THREADS))

install: $(STAMP)

$(STAMP): pyproject.toml
	@py=$(PYTHON); if [ -x $(BIN)/python ]; then py=$(BIN)/python; fi; \
	$$py -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { \
	  echo "diffusion-lite needs Python >= 3.10, and $$py is $$($$py -c 'import sys; print(sys.version.split()[0])')."; \
	  if [ "$$py" = "$(BIN)/python" ]; then echo "Remove the old $(VENV) first: make clean"; fi; \
	  echo "Then name a newer Python, e.g.: make demo PYTHON=python3.12"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install "torch>=2.4" "torchvision>=0.19" --index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"
	touch $(STAMP)

# text files are read and written as UTF-8 everywhere, not in the locale's encoding (cp1252 on many Windows
# machines); PLW1514 is a preview rule of ruff, so it is selected on its own. vermin reads the code for
# standard-library modules and calls newer than pyproject's requires-python (3.10; CI runs 3.11, where
# `import tomllib` would pass unnoticed)
LINT_PATHS = diffusion_lite tests benchmarks scripts notebooks

# everything CI checks: lint, fast package tests, then the notebooks under nbval
test: lint
	TQDM_DISABLE=1 $(BIN)/python -m pytest tests -q -n 2
	$(MAKE) test-notebooks

test-fast: $(STAMP) check-dev
	TQDM_DISABLE=1 $(BIN)/python -m pytest tests -q -n 2

test-notebooks: $(STAMP) check-dev
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	  TQDM_DISABLE=1 MPLBACKEND=agg $(BIN)/python -m pytest --nbval-lax --nbval-current-env \
	    --nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider -n 2 --dist loadfile -q notebooks; \
	else echo "no notebooks yet"; fi

# the package tests at the lowest versions pyproject.toml allows (constraints-min.txt), in a venv of their own
# (MIN_VENV; the first run downloads torch 2.4.1 and its CUDA libraries from PyPI, about 3 GB, or with
# TORCH_INDEX=https://download.pytorch.org/whl/cpu its CPU build, as for `make install`); not part of CI
MIN_VENV ?= .venv-min
test-min:
	test -d $(MIN_VENV) || $(PYTHON) -m venv $(MIN_VENV)
	$(if $(TORCH_INDEX),$(MIN_VENV)/bin/python -m pip install -q -c constraints-min.txt torch torchvision --index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple)
	$(MIN_VENV)/bin/python -m pip install -q -c constraints-min.txt -e ".[dev,notebooks,hf]"
	TQDM_DISABLE=1 $(MIN_VENV)/bin/python -m pytest tests -q -n 2 -p no:cacheprovider

# the tests need the dev extra, which an install with EXTRAS=notebooks leaves out
check-dev: $(STAMP)
	@$(BIN)/python -c 'import pytest, xdist, nbval, ruff, vermin' 2>/dev/null || { \
	  echo "the tests need the 'dev' extra: $(BIN)/python -m pip install -e '.[dev]' (or '.[all]')"; exit 1; }

lint: $(STAMP) check-dev
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff check --preview --select PLW1514 $(LINT_PATHS)  # open/read_text/write_text name their encoding
	$(BIN)/vermin -q -t=3.10- --no-tips --eval-annotations --violations $(LINT_PATHS)  # nothing newer than 3.10

# re-execute every notebook in place (the committed outputs come from this) and sync the .py twins
notebooks: $(STAMP)
	TQDM_DISABLE=1 $(BIN)/python scripts/run_notebooks.py

sync: $(STAMP)
	$(BIN)/jupytext --sync notebooks/*.ipynb

clean:
	rm -rf $(VENV) outputs .pytest_cache
