# Quick start: `make serve` (install, prepare the embedded model and Redis, start web + worker)
# and `make test`. Everything lives in .venv; nothing is downloaded from a model hub.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# llama.cpp is compiled for x86-64 with AVX2, not -march=native: a native build on a Sapphire Rapids
# CPU enables AMX, whose kernels segfault on the first decode in many VMs (ggml-org/llama.cpp#20824).
# pip caches the built wheel without these flags in its key: after changing them, run
# `pip cache remove llama_cpp_python`. Override with CMAKE_ARGS=... (e.g. -DGGML_NATIVE=ON on bare metal).
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
export CMAKE_ARGS ?= $(if $(filter x86_64,$(shell uname -m)),$(LLAMA_CMAKE_ARGS),)

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
