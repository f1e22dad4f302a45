# flowkit: `make demo` sets everything up and runs the demo; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch first: a bare `torch` requirement pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
FLOWKIT := $(VENV)/bin/flowkit
DEMO ?= demo
VIDEOS ?= videos
OUT ?= out.h5
SHARDS ?= 8
EXTRACT_ARGS ?=

.PHONY: install demo test lint bench clean extract

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(DEMO)/videos: | $(VENV)/.installed
	$(FLOWKIT) synth $(DEMO)/videos

# The demo: a synthetic action dataset -> flow -> both streams trained and fused (a few minutes).
# Run it again and every step resumes: nothing done is done twice.
demo: install $(DEMO)/videos
	$(FLOWKIT) extract $(DEMO)/videos $(DEMO)/out.h5 --no-resize
	$(FLOWKIT) info $(DEMO)/out.h5
	$(FLOWKIT) verify --quiet $(DEMO)/out.h5
	$(FLOWKIT) show $(DEMO)/out.h5 warm_right/warm_right_00 -o $(DEMO)/warm_right.png
	$(FLOWKIT) train-two-stream --data $(DEMO)/out.h5 --labels $(DEMO)/videos/splits \
		--pipeline pipelines/demo.toml --out $(DEMO)/run --resume

# Batch extraction through make's own rules (pipelines/extract.mk), e.g.
#   make extract VIDEOS=UCF-101 OUT=ucf101.h5 SHARDS=64 -j 16
extract: install
	$(MAKE) -f pipelines/extract.mk FLOWKIT=$(abspath $(FLOWKIT)) VIDEOS=$(VIDEOS) OUT=$(OUT) SHARDS=$(SHARDS) EXTRACT_ARGS="$(EXTRACT_ARGS)"

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) benchmarks/extract.py

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache
