# whisper-subs: `make demo` and `make test` work on a fresh machine (PyPI only, no GPU).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR := demo

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[models,serve,ray,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m whisper_subs.demo $(DEMO_DIR)

test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

bench: $(STAMP)
	$(BIN)/whisper-subs bench ../shared/testdata/derived/ljspeech_LJ001-0001-0032_chapter_concat.flac \
		--ref ../shared/testdata/derived/ljspeech_LJ001-0001-0032_chapter_concat.ref.txt

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache
