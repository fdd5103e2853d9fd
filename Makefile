# Every target sets up what it needs first (idempotent): a fresh machine needs nothing else.
PY := .venv/bin/python
SHOAL := .venv/bin/shoal

.PHONY: setup demo test test-fast

setup:
	bash scripts/setup.sh

demo: setup
	$(SHOAL) demo

test: setup
	$(PY) scripts/run_tests.py

test-fast: setup
	$(PY) -m pytest tests -x -q
