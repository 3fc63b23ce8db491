# Two commands do everything on a fresh machine (see README.md):
#   make demo   - create/reuse .venv, install, run the embedded ScaleNet demo (classification, detection,
#                 segmentation; CPU)
#   make test   - create/reuse .venv, install, run the test suite
PY := .venv/bin/python
WORK_DIR ?= work_dirs/demo

.PHONY: install demo test clean

install:
	bash scripts/install.sh

demo: install
	$(PY) tools/demo.py --work-dir $(WORK_DIR)

test: install
	$(PY) -m pytest -q --durations=15 tests

clean:
	rm -rf work_dirs .pytest_cache
