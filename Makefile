# The two set-up commands: `make demo` (install + the whole pipeline) and `make test`.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: install demo test params verdicts robustness gpu-check mutation

install: $(VENV)/.installed .dvc/plots_template.html

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

# dvc plots' page template with Vega inlined (.dvc/config points to it): the plots draw offline.
.dvc/plots_template.html: $(VENV)/.installed tgo/plots_page.py
	$(BIN)/python -m tgo.plots_page $@

demo: install
	dvc repro
	dvc metrics show reports/metrics/train.json
	@echo "All metrics: dvc metrics show --md.  Report: $(CURDIR)/reports/report.html"

# params.yaml from conf/ (what `dvc exp run` writes), after editing conf/ and before `dvc repro`.
params: install
	python -c "from dvc.utils.hydra import compose_and_dump; compose_and_dump('params.yaml', '$(CURDIR)/conf', None, 'config', '', [])"

# Every claim's verdict across the experiments (and zoo models), one row per claim: dvc exp show's
# options after ARGS=, e.g. make verdicts ARGS="-A".
verdicts: install
	python -m tgo.claims.table $(ARGS)

# Each claim across SEEDS more training seeds and every analysis variant of conf/variants.yaml, as
# DVC experiments, then their aggregate in reports/robustness/ (README: Seeds and analysis variants).
SEEDS ?= 1 2
robustness: install
	python -m tgo.robustness queue seeds $(SEEDS)
	python -m tgo.robustness queue variants
	dvc exp run --run-all
	python -m tgo.robustness
	dvc repro report

# The tests wait mostly on stage subprocesses of one thread each: one worker per core, a file per worker,
# the longest files first (tests/conftest.py; xdist would otherwise order files by their number of tests).
test: install
	pytest -n auto --dist loadfile --no-loadscope-reorder

# A GPU machine's check: throughput, one epoch of the DeiT preset and every stage -> gpu_check.json
# (without a GPU: a tiny version of the same, bench/gpu_check.py).
gpu-check: install
	python bench/gpu_check.py

# The unit tests' mutation score over tgo/geometry/ and tgo/claims/ (mutmut: pyproject.toml's
# [tool.mutmut]) and the surviving mutants without a test or a reason (tests/mutation_score.py).
# Not part of make test (README: Tests). mutmut keeps its results in mutants/: a rerun tests the
# functions that changed, and the survivors again (mutmut lets a result stand when tests are added).
# One BLAS thread: mutmut forks a worker per mutant, and a BLAS thread pool does not survive a fork.
MUTMUT = OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 mutmut run --max-children $(shell nproc)
mutation: install
	pip install -q mutmut==3.8.1
	$(MUTMUT)
	survivors=$$(mutmut results | sed -n 's/^ *\(.*\): survived$$/\1/p'); [ -z "$$survivors" ] || $(MUTMUT) $$survivors
	python tests/mutation_score.py
