"""What every command shares: settings, the engine, Redis, progress bars, JSON output, input files, and
the one-line errors with their exit codes.

Exit codes (docs/operations.md, "Command line"): 0 done; 1 it ran and something failed (Redis or Label
Studio unreachable or refusing, the LLM failing, tasks that could not be pre-annotated); 2 it could not
run as given (an option, a setting, an input file, or a version or control the store does not have).
Every expected failure is one line, `Error: …`, on stderr; a traceback means a bug."""
from __future__ import annotations

import json
import logging
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import click

from ..errors import BackendError, ConfigurationError, DatasetError
from ..settings import Settings

MAX_ERROR_CHARS = 400


def one_line(message: str) -> str:
    line = " ".join(str(message).split())
    return line if len(line) <= MAX_ERROR_CHARS else line[:MAX_ERROR_CHARS - 1] + "…"


class InputError(click.ClickException):
    """The command cannot run as given: an option, a setting, an input file or a name is wrong (exit 2)."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(one_line(message))


class Failure(click.ClickException):
    """It ran and something it depends on failed: Redis, Label Studio, the LLM (exit 1)."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(one_line(message))


def as_click_error(exc: Exception) -> click.ClickException | None:
    """The one-line error an expected exception is shown as, or None (a bug: its traceback is shown)."""
    import redis

    if isinstance(exc, (click.ClickException, click.exceptions.Exit, click.Abort)):
        return None
    if isinstance(exc, BackendError):  # a 4xx-like error (a config, a data set, a name) is the caller's to fix
        fixable = isinstance(exc, (ConfigurationError, DatasetError)) or 400 <= exc.status < 500
        return (InputError if fixable else Failure)(exc.message)
    if isinstance(exc, redis.AuthenticationError):
        return Failure(f"Redis refused the credentials: {exc}")
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return Failure(f"Redis cannot be reached: {exc}")
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)) and exc.filename:
        return InputError(f"{exc.filename}: {exc.strerror}")
    return None


class Group(click.Group):
    """A command group whose expected failures become one `Error: …` line with their exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            error = as_click_error(exc)
            if error is None:
                raise
            raise error from exc


def load_settings() -> Settings:
    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:  # a one-line message naming what to set, not a traceback
        raise InputError(exc.message) from exc
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per Label Studio API call otherwise
    return settings


def labeling_service(settings: Settings):
    from ..engines.factory import load_engine
    from ..labeling.service import LabelingService

    return LabelingService(load_engine(settings), calibration=settings.calibration)


def redacted(url: str) -> str:
    """A URL without its password (a Redis URL may carry one)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def redis_connection(settings: Settings):
    """The configured Redis (checked now, so that an unreachable one is one line naming it), else the
    embedded one under MODEL_DIR."""
    import redis

    from ..store.redis import EmbeddedRedis, connect, external_url

    url = external_url(settings)
    conn = connect(settings, url or EmbeddedRedis(settings.model_dir).url)
    if url:
        try:
            conn.ping()
        except redis.RedisError as exc:
            raise Failure(f"Redis at {redacted(url)} cannot be reached ({exc}): check REDIS_URL or "
                          "REDIS_HOST/REDIS_PORT, or unset them for the embedded Redis") from exc
    return conn


def progress_bar(total: int, label: str):
    """A progress bar on stderr, off when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="item", file=sys.stderr, disable=None)


@contextmanager
def budget_bar(seconds: float, label: str):
    """A bar over a time budget, for work that reports no progress of its own but stops at a deadline
    (a refinement: REFINE_MAX_SECONDS). On stderr, and off when stderr is not a terminal."""
    from tqdm import tqdm

    with tqdm(total=max(1, round(seconds)), desc=label, unit="s", file=sys.stderr, disable=None,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {n}/{total} s of the time budget") as progress:
        done = threading.Event()

        def tick() -> None:
            t0 = time.monotonic()
            while not done.wait(1.0):
                progress.n = min(round(time.monotonic() - t0), progress.total)
                progress.refresh()

        ticker = None if progress.disable else threading.Thread(target=tick, daemon=True)
        if ticker:
            ticker.start()
        try:
            yield
        finally:
            done.set()
            if ticker:
                ticker.join()


def json_option(help_text: str = "Print the result as JSON."):
    return click.option("--json", "as_json", is_flag=True, help=help_text)


ALREADY_JSON = "Its result is JSON already; accepted as on every command that prints one."


def print_json(value) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False,
                          default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def jsonl_rows(lines, name: str, numbers: list[int] | None = None) -> list[dict]:
    """The JSON objects of a JSONL stream; a malformed line is named by its file and line number.
    `numbers`, when given, receives each object's line number."""
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.rstrip("\r\n"))  # a column past the end is on this line, not the next
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}, line {number}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(row, dict):
            raise InputError(f"{name}, line {number}: a JSON object is expected, not {type(row).__name__}")
        rows.append(row)
        if numbers is not None:
            numbers.append(number)
    return rows


def read_data(loader, path: str | Path, why: str = "", **kwargs):
    """`loader(path, **kwargs)` of a labelled JSONL (a data set, span rows), with one-line errors that
    name the file, and its line when one is malformed. `why` says why a file nobody named is read."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {'not a file' if path.exists() else 'no such file'}{why}")
    try:
        return loader(path, **kwargs)
    except (json.JSONDecodeError, AttributeError, TypeError) as exc:  # a malformed row: find it
        try:
            with path.open(encoding="utf-8") as lines:
                jsonl_rows(lines, str(path))
        except UnicodeDecodeError:
            pass
        if isinstance(exc, json.JSONDecodeError):  # e.g. labels.json beside it
            raise InputError(f"{path} (or labels.json beside it): not valid JSON ({exc.msg})") from None
        raise
    except KeyError as exc:
        raise InputError(f"{path}: a row lacks {exc.args[0]!r}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def dataset(path: str | Path, why: str = "", **kwargs):
    from ..evaluation.datasets import load_dataset

    return read_data(load_dataset, path, why, **kwargs)


def beside(path: str, name: str, option: str) -> tuple[Path, str]:
    """A file read beside a data set (train.jsonl), and why it is read, for its error."""
    return Path(path).with_name(name), f" ({option} reads {name} beside --dataset)"
