"""A real Label Studio 1.23.2 and our real service (gunicorn + RQ worker + embedded Redis), both on
127.0.0.1, started once per session. Label Studio is started as soon as collection ends and comes
up while the tests before these run (pytest.ini lists tests/e2e last).

Label Studio is installed into its own virtualenv (never ours) by the shared start script, in
E2E_LS_VENV (default ~/.cache/llmlb-e2e/lsenv), and reused when it is there: a cold install
from PyPI takes 1.5-3 minutes, the first start (database migrations) about 50 s. The script
also does the token dance (login, enable legacy tokens, read the token). E2E_LS_URL plus
E2E_LS_TOKEN point the tests at a Label Studio that is already running instead (it must run
with ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from tests.conftest import MODEL_DIR, ROOT, SHARED, free_port

LS_VENV = Path(os.environ.get("E2E_LS_VENV") or Path.home() / ".cache" / "llmlb-e2e" / "lsenv")
START_SCRIPT = SHARED / "scripts" / "start-label-studio.sh"
LS_CONSTRAINTS = Path(__file__).with_name("label-studio-constraints.txt")
INSTALL_AND_START_TIMEOUT_S = 20 * 60  # cold pip install (≈3 min) + first start with migrations (≈1 min), with room
BASIC_AUTH = ("ls-e2e", "e2e-basic-password-0123")
TIMINGS: dict[str, float] = {}  # printed at the end of the session (pytest_terminal_summary)
EARLY: dict = {}  # the start script launched as collection ends (pytest_collection_finish)


class LabelStudioError(AssertionError):
    """Label Studio answered something other than what the step needs."""


@dataclass
class LabelStudio:
    """Label Studio's REST API with a legacy token (`Authorization: Token …`)."""

    url: str
    token: str
    log: str = ""
    http: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self):
        self.http.headers["Authorization"] = f"Token {self.token}"

    def call(self, method: str, path: str, expect: tuple[int, ...] = (200, 201), timeout: float = 60, **kw):
        r = self.http.request(method, self.url + path, timeout=timeout, **kw)
        if r.status_code not in expect:
            raise LabelStudioError(f"{method} {path} → {r.status_code}: {r.text[:800]}")
        return r.json() if r.content else None

    def tasks(self, project: int, ordering: str | None = None, filters: list[dict] | None = None) -> list[dict]:
        """All tasks of a project as the Data Manager lists them, optionally ordered and filtered
        like a Data Manager view (`tasks:predictions_score`, `filter:tasks:predictions_score`)."""
        query: dict = {"ordering": [ordering]} if ordering else {}
        if filters:
            query["filters"] = {"conjunction": "and", "items": filters}
        path = f"/api/tasks?project={project}&page_size=1000&query={urllib.parse.quote(json.dumps(query))}"
        return self.call("GET", path)["tasks"]

    def predictions(self, project: int) -> list[dict]:
        return self.call("GET", f"/api/predictions?project={project}")

    def retrieve_predictions(self, project: int, task_ids: list[int]) -> dict:
        """The Data Manager action "Retrieve predictions" on these tasks (one /predict call, 100 s)."""
        body = {"selectedItems": {"all": False, "included": task_ids}}
        return self.call("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
                         json=body, timeout=300)


def _launch_label_studio() -> dict:
    """Run the start script in the background (it installs if needed, starts, waits for health,
    prints the token, and exits with Label Studio left running); its output goes to files, which a
    pipe left unread could fill."""
    if not START_SCRIPT.is_file():
        pytest.fail(f"{START_SCRIPT} is missing: the e2e tests need ../shared beside the repository")
    work = Path(tempfile.mkdtemp(prefix="llmlb-e2e-ls-"))
    out, err = open(work / "start.out", "w+"), open(work / "start.err", "w+")
    env = dict(os.environ, LS_HEALTH_TIMEOUT="300", PIP_CONSTRAINT=str(LS_CONSTRAINTS))
    pip = LS_VENV / "bin" / "pip"
    if pip.exists():  # an env installed before a pin was added is brought within it (a no-op once it is)
        subprocess.run([str(pip), "install", "-q", "--disable-pip-version-check", "-r", str(LS_CONSTRAINTS)],
                       stdout=out, stderr=err, env=env, check=False, timeout=300)
    proc = subprocess.Popen(["bash", str(START_SCRIPT), str(LS_VENV), str(free_port()), str(work / "data")],
                            stdout=out, stderr=err, text=True, env=env, start_new_session=True)
    return {"proc": proc, "out": out, "err": err, "work": work, "started": time.time()}


def _wait_label_studio(launch: dict) -> LabelStudio:
    """The launched Label Studio once it is up. Timings: how long the script took (its output's
    last write) and how much of it the e2e tests still had to wait."""
    waiting = time.monotonic()
    try:  # on failure the fixture's _finish stops the script and what it started
        code = launch["proc"].wait(timeout=max(1.0, INSTALL_AND_START_TIMEOUT_S - (time.time() - launch["started"])))
    except subprocess.TimeoutExpired:
        pytest.fail(f"start-label-studio.sh did not finish in {INSTALL_AND_START_TIMEOUT_S} s")
    TIMINGS["label_studio_install_and_start_s"] = round(os.stat(launch["out"].name).st_mtime - launch["started"], 1)
    TIMINGS["label_studio_waited_s"] = round(time.monotonic() - waiting, 1)
    launch["out"].seek(0)
    launch["err"].seek(0)
    stdout, stderr = launch["out"].read(), launch["err"].read()
    out = dict(line.split("=", 1) for line in stdout.splitlines() if line.startswith("LS_") and "=" in line)
    if code != 0 or "LS_TOKEN" not in out:
        pytest.fail(f"start-label-studio.sh failed ({code}):\n{stderr[-3000:]}")
    return LabelStudio(url=out["LS_URL"], token=out["LS_TOKEN"], log=out.get("LS_LOG", ""))


def _stop(pid: int, timeout: float = 5) -> None:
    """Stop the Label Studio process the start script launched for us (by its id only)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def label_studio():
    if _given():
        yield LabelStudio(url=os.environ["E2E_LS_URL"].rstrip("/"), token=os.environ["E2E_LS_TOKEN"])
        return
    launch = EARLY.pop("launch", None) or _launch_label_studio()  # the fixture owns it from here
    try:
        yield _wait_label_studio(launch)
    finally:
        _finish(launch)


def _given() -> bool:
    """E2E_LS_URL and E2E_LS_TOKEN name a Label Studio that is already running: none is started."""
    return bool(os.environ.get("E2E_LS_URL") and os.environ.get("E2E_LS_TOKEN"))


def _finish(launch: dict) -> None:
    """Stop what the launch started: the script and its Label Studio if the script still runs
    (they share the process group it was started in), else Label Studio by its pid file."""
    if launch["proc"].poll() is None:
        os.killpg(launch["proc"].pid, signal.SIGKILL)
        launch["proc"].wait()
    pid_file = launch["work"] / "data" / "label-studio.pid"
    if pid_file.is_file():
        _stop(int(pid_file.read_text()))
    launch["out"].close()
    launch["err"].close()
    shutil.rmtree(launch["work"], ignore_errors=True)


def pytest_collection_finish(session):
    """Start Label Studio as soon as the session knows it will need it: the e2e tests run last
    (pytest.ini's testpaths), so its install and start (a minute or two, mostly one core) overlap
    the tests before them instead of adding to the run."""
    if _given() or session.config.option.collectonly:
        return
    if not START_SCRIPT.is_file():
        return  # the fixture says so, as a test failure
    if any(Path(str(item.fspath)).is_relative_to(Path(__file__).parent) for item in session.items):
        EARLY["launch"] = _launch_label_studio()


def pytest_sessionfinish(session):
    """A launch whose Label Studio no test asked for (the e2e tests deselected or not reached)."""
    launch = EARLY.pop("launch", None)
    if launch is not None:
        _finish(launch)


@dataclass
class Service:
    url: str
    env: dict  # what the service's processes see (for running our CLI against the same Redis)
    log_path: Path
    http: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self):
        self.http.auth = BASIC_AUTH
        # GETs are retried: polling every 2 s on a keep-alive session races gunicorn's 2 s keep-alive
        # timeout, and a request sent on a connection the server has just closed fails with
        # "Remote end closed connection without response" (seen once in CI)
        retry = Retry(total=3, backoff_factor=0.2, allowed_methods=frozenset({"GET"}))
        self.http.mount("http://", HTTPAdapter(max_retries=retry))

    def jobs(self, project: int) -> dict:
        r = self.http.get(f"{self.url}/jobs?project={project}", timeout=10)
        r.raise_for_status()
        return r.json()

    def cli(self, *args: str, **popen) -> subprocess.Popen:
        """`python -m backend …` with the service's settings (same MODEL_DIR, Redis, Label Studio).

        Ctrl-C (SIGINT) reaches it as it would at a terminal: a test run started in the background
        of a non-interactive shell has SIGINT ignored, which its children would inherit."""
        return subprocess.Popen([sys.executable, "-m", "backend", *args], env=self.env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen)


@pytest.fixture(scope="session")
def service(label_studio, tmp_path_factory):
    """Our stack as `serve` starts it, with basic auth, the Label Studio API, and learning that
    starts only when Label Studio says so (START_TRAINING), not on a debounce timer."""
    from backend.engines.factory import prepare_model
    from backend.settings import Settings
    from backend.supervisor import Stack

    model_dir = tmp_path_factory.mktemp("llmlb-e2e")
    gguf = prepare_model(Settings.from_env({"MODEL_DIR": str(MODEL_DIR)}))
    env = {
        "BASIC_AUTH_USER": BASIC_AUTH[0], "BASIC_AUTH_PASS": BASIC_AUTH[1],
        "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
        "LLM_MODEL": str(gguf.resolve()),
        "REFINE_MIN_NEW": "1000000", "REFINE_DELAY": "1000000",  # train on START_TRAINING only
        "REFINE_MAX_SHOTS": "4",  # as the refinement integration test: keeps the job to a few minutes
        "REFINE_REASONING_SAMPLES": "0",  # reasoning candidates have their own integration test
        "REFINE_REWRITE_ROUNDS": "0",  # and so has the instruction rewrite
        "REFINE_TUNE_SECONDS": "0",  # and the fine-tuned head
        "PREANNOTATE_ON_IMPORT": "true",
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "INFO",
    }
    settings = Settings.from_env({**env, "MODEL_DIR": str(model_dir), "HOST": "127.0.0.1", "PORT": str(free_port())})
    log_path = model_dir / "service.log"
    t0 = time.monotonic()
    with open(log_path, "wb") as log_file, Stack(settings, env, log_file) as stack:
        deadline = time.monotonic() + 180
        while True:
            if stack.exited() is not None:
                pytest.fail(f"our service exited: {log_path.read_text()[-3000:]}")
            try:
                if requests.get(stack.url + "/health", timeout=1).json().get("model_state") == "ready":
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"our service did not become ready: {log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        TIMINGS["service_start_s"] = round(time.monotonic() - t0, 1)
        full_env = dict(os.environ, **env, MODEL_DIR=str(model_dir), REDIS_URL=stack.embedded.url)
        yield Service(url=stack.url, env=full_env, log_path=log_path)


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_line("e2e timings: " + json.dumps(TIMINGS))
