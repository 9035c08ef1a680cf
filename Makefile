# The two set-up commands: `make demo` (install + the whole pipeline) and `make test`.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: install demo test test-all

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

demo: install
	dvc repro
	dvc metrics show
	@echo "Report: $(CURDIR)/reports/report.html"

test: install
	pytest

test-all: install
	pytest -m ""
