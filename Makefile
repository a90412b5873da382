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

.PHONY: serve test install prepare worker eval bench load lock audit clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Locked installs (docs/development.md, "Supply chain"): requirements*.txt pin every package with the
# sha256 of its files, and pip refuses a file whose hash is not there. pip itself comes first from its
# own lock: a recent pip reuses the cached llama.cpp wheel in hash-checking mode (an early 3.11's pip
# rebuilds it). Then the project itself (pyproject.toml: the `llm-labeling` console script), editable,
# without dependencies and built by the setuptools the lock installed: nothing unhashed is downloaded.
$(STAMP): $(PY) requirements-pip.txt requirements.txt requirements-dev.txt pyproject.toml
	$(PY) -m pip install --require-hashes -r requirements-pip.txt
	$(PY) -m pip install --require-hashes -r requirements-dev.txt
	$(PY) -m pip install --no-deps --no-build-isolation --no-index --quiet -e .
	touch $(STAMP)

install: $(STAMP)

# After editing a requirements*.in: regenerate its lock (UPGRADE=1: unpinned dependencies to their newest
# allowed releases). pip must see the torch CPU wheel: this machine kind's find-links has it; elsewhere set
# PIP_EXTRA_INDEX_URL to the PyTorch CPU index (without it, torch==2.13.0+cpu does not resolve).
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade)
lock: install
	$(PIP_COMPILE) -o requirements-pip.txt requirements-pip.in
	$(PIP_COMPILE) -o requirements.txt requirements.in
	$(PIP_COMPILE) -o requirements-dev.txt requirements-dev.in

# Known vulnerabilities of the locked runtime, from PyPI's advisory data (nothing is installed: the lock is
# hashed). A finding fails `make test`; each ignored id is explained in docs/development.md, "Supply chain".
AUDIT_IGNORE := GHSA-w8v5-vhqr-4h9v
audit: install
	$(VENV)/bin/pip-audit --requirement requirements.txt --disable-pip --progress-spinner off \
		$(addprefix --ignore-vuln ,$(AUDIT_IGNORE)) $(AUDIT_ARGS)

prepare: install
	$(PY) -m backend prepare

serve: prepare
	$(PY) -m backend serve

worker: install
	$(PY) -m backend worker

test: prepare audit
	$(PY) -m pytest $(PYTEST_ARGS)

eval: prepare
	$(PY) -m backend eval --dataset ../shared/datasets/subjectivity/test.jsonl --limit 300

bench: prepare
	$(PY) -m backend bench --dataset ../shared/datasets/subjectivity/test.jsonl --limit 100

# needs wrk (apt-get install -y wrk); LOAD_ARGS=--quick for a 20 s run
load: prepare
	$(PY) -m backend load-bench $(LOAD_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
