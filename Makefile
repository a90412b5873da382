# Quick start: `make serve` (install, prepare the embedded model and Redis, start web + worker)
# and `make test`. Everything lives in .venv; nothing is downloaded from a model hub.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: serve test install prepare worker eval bench clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.txt requirements-dev.txt
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

prepare: install
	$(PY) -m backend prepare

serve: prepare
	$(PY) -m backend serve

worker: install
	$(PY) -m backend worker

test: prepare
	$(PY) -m pytest $(PYTEST_ARGS)

eval: prepare
	$(PY) -m backend eval --dataset ../shared/datasets/subjectivity/test.jsonl --limit 300

bench: prepare
	$(PY) -m backend bench --dataset ../shared/datasets/subjectivity/test.jsonl --limit 100

clean:
	rm -rf $(VENV) .pytest_cache
