# `make run`: set up and run the embedded default study, then build its report.
# `make test`: set up and run the test suite (what CI runs); `make test-fast`: the unit tests only.
# `make lint`: ruff, snakemake --lint and snakefmt (CI runs it first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= profiles/local
CONFIG ?= config/config.yaml
STUDY = $(shell $(BIN)/python -c "import yaml,sys; print(yaml.safe_load(open('$(CONFIG)'))['study'])")
ENV_FILE := workflow/envs/evotrace.yaml
TORCH := $(shell sed -n 's/^ *- *\(torch==[^ ]*\) *$$/\1/p' $(ENV_FILE))

.PHONY: setup run report test test-fast test-slurm lint clean

setup: $(VENV)/.installed

# torch is pinned first so that no dependency can pull a multi-GB CUDA build in its place
$(VENV)/.installed: pyproject.toml $(ENV_FILE)
	@test -n "$(TORCH)" || { echo "no torch==X pin found in $(ENV_FILE)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[workflow,test,local-mpi]'
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	    else echo "note: static figures (PDF/PNG) need Chromium: sudo apt-get install chromium"; fi; }
	touch $@

run: setup
	$(BIN)/snakemake --profile $(PROFILE) --configfile $(CONFIG)
	$(BIN)/snakemake --profile $(PROFILE) --configfile $(CONFIG) --report results/$(STUDY)/report.html

test: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q

# no mpiexec ranks, no end-to-end runs (pytest markers mpi and slow): a few minutes less than `make test`
test-fast: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -m "not mpi and not slow"

# The CI study on a real one-node Slurm (as root): Debian's Slurm and munge if absent, the slurm extra,
# then tests/test_slurm.py starts munged/slurmctld/slurmd, runs the study and stops them by pid.
test-slurm: setup
	@command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] || { echo "test-slurm installs Slurm: run it as root"; exit 1; }; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      slurmctld slurmd slurm-client munge >/dev/null; }
	$(BIN)/pip install -q -e '.[workflow,test,local-mpi,slurm]'
	EVOTRACE_SLURM_TEST=1 PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q tests/test_slurm.py

lint: setup
	$(BIN)/ruff check src tests bench workflow/scripts
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules

clean:
	rm -rf .snakemake results logs benchmarks resources
