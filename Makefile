# flowkit: `make demo` sets everything up and runs the demo; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch first: a bare `torch` requirement pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
FLOWKIT := $(VENV)/bin/flowkit
DEMO ?= demo

.PHONY: install demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(DEMO)/videos: | $(VENV)/.installed
	$(FLOWKIT) synth $(DEMO)/videos

demo: install $(DEMO)/videos
	$(FLOWKIT) extract $(DEMO)/videos $(DEMO)/out.h5 --no-resize
	$(FLOWKIT) info $(DEMO)/out.h5
	$(FLOWKIT) verify --quiet $(DEMO)/out.h5
	$(FLOWKIT) show $(DEMO)/out.h5 rotate -o $(DEMO)/rotate.png
	$(FLOWKIT) show $(DEMO)/out.h5 zoom_in -o $(DEMO)/zoom_in.mp4

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) benchmarks/extract.py

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache
