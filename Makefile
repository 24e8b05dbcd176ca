# Two commands for a newcomer: `make demo` and `make test`. Everything else is here for them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SAMPLE := sample_data/generated
SAMPLE_STAMP := $(SAMPLE)/.complete
GLIOMA := sample_data/glioma
GLIOMA_STAMP := $(GLIOMA)/.complete

.PHONY: demo test venv sample-data pacs-export system-deps lint bench clean

venv: $(STAMP)

# Re-install when the package metadata changes; editable, so code edits need no reinstall.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

sample-data: $(SAMPLE_STAMP) $(GLIOMA_STAMP)

# Deterministic: derived from the real images in pyradiomics' sdist (downloaded from PyPI once).
$(SAMPLE_STAMP): $(STAMP) sample_data/generate.py
	$(PY) sample_data/generate.py --out $(SAMPLE)

# The glioma patient (T1c, FLAIR, BraTS labels), derived from the same real MR: RANO from the images.
$(GLIOMA_STAMP): $(SAMPLE_STAMP) sample_data/glioma.py sample_data/generate.py
	$(PY) sample_data/glioma.py --out $(GLIOMA)

demo: $(SAMPLE_STAMP) $(GLIOMA_STAMP)
	$(VENV)/bin/tumor-response run configs/sample.yaml
	$(VENV)/bin/tumor-response run configs/sample_glioma.yaml

PACS := sample_data/pacs_export

# An archive shaped like a PACS export, built from the sample data (configs/pacs_export.yaml runs it).
pacs-export: $(PACS)/truth.json

$(PACS)/truth.json: $(SAMPLE_STAMP) sample_data/pacs_export.py
	$(PY) sample_data/pacs_export.py --sample $(SAMPLE) --out $(PACS)

# Debian packages of the real parts the tests drive (browser, PACS, DICOM validator); see .ci/system-deps.sh.
system-deps:
	bash .ci/system-deps.sh

test: $(SAMPLE_STAMP) $(GLIOMA_STAMP) system-deps
	$(PY) -m pytest -q

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e ".[test,bench]"
	touch $@

# Side-by-side figures against the peers (installed only here); prints a table, writes benchmarks/results/latest.json.
bench: $(SAMPLE_STAMP) $(BENCH_STAMP)
	$(PY) benchmarks/run.py $(ARGS)

# ruff (lint) over the library, the pipelines, the tests and the benchmarks.
lint: $(STAMP)
	$(VENV)/bin/ruff check imaging pipelines tests benchmarks sample_data/generate.py sample_data/glioma.py

clean:
	rm -rf out $(SAMPLE) $(GLIOMA) $(PACS) sample_data/.cache
