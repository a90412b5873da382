"""The command line fails in one line with an exit code (docs/operations.md, "Command line"): 2 when
it cannot run as given (an option, a setting, an input file, a name the store does not have), 1 when
something it depends on fails (Redis, Label Studio, the LLM). Each case runs the installed console
script, `llm-labeling`, in a real process, against real Redis and real sockets; none loads the model."""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from backend.engines.factory import engine_id
from backend.labeling.label_config import parse_label_config
from backend.labeling.model_version import ModelVersion
from backend.labeling.recipe import ControlRecipe
from backend.settings import Settings
from backend.store.versions import VersionRegistry
from tests.conftest import ROOT, free_port

SCRIPT = Path(sys.executable).with_name("llm-labeling")
PROJECT = 64
CONFIG = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
          '<Choice value="spam"/><Choice value="ham"/></Choices></View>')
# settings of the operator's shell that would change what these commands do
UNSET = ("REDIS_URL", "REDIS_HOST", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "PORT", "HOST", "LLM_BACKEND",
         "LLM_MODEL", "OPENAI_BASE_URL")


def cli(*args: str, env: dict | None = None, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in UNSET}
    full.update(LOG_LEVEL="WARNING", LLM_N_THREADS="1", **(env or {}))
    return subprocess.run([str(SCRIPT), *args], input=stdin, env=full, cwd=cwd or ROOT, capture_output=True,
                          text=True, timeout=120)


def error_line(done: subprocess.CompletedProcess, code: int) -> str:
    """The one line a failed command printed, after checking its exit code and that it is alone."""
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == code, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    return lines[0]


OWN_DB = int(os.environ.get("CLI_TEST_REDIS_DB", "9"))


@pytest.fixture
def own_redis(redis_url):
    """A database of its own on the test Redis: other test runs on this machine flush the shared one
    (TEST_REDIS_DB) while these commands run in their own processes. An embedded Redis is ours alone."""
    import redis

    url = f"{redis_url.rsplit('/', 1)[0]}/{OWN_DB}" if redis_url.startswith("redis://") else redis_url
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    yield url, conn
    conn.flushdb()


@pytest.fixture
def model_dir(tmp_path, own_redis) -> dict:
    return {"MODEL_DIR": str(tmp_path), "REDIS_URL": own_redis[0]}


def test_the_console_script_is_installed_and_works_from_any_directory(tmp_path):
    assert SCRIPT.is_file(), "make install installs the project (pyproject.toml): `llm-labeling`"
    done = cli("--help", cwd=tmp_path)
    assert done.returncode == 0 and "Exit codes" in done.stdout
    assert {"preannotate", "predict", "eval", "versions", "suspects"} <= set(done.stdout.split())
    module = subprocess.run([sys.executable, "-m", "backend", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert module.returncode == 0 and module.stdout.replace("python -m backend", "llm-labeling") == done.stdout


@pytest.mark.parametrize("env, args, says", [
    ({"PORT": "abc"}, ["serve"], "PORT"),
    ({"PORT": "99999"}, ["serve"], "PORT must be between 1 and 65535, got 99999"),
    ({"LLM_BACKEND": "nope"}, ["versions", "--project", "1"], "LLM_BACKEND"),
    ({}, ["preannotate", "--project", "1"], "set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY"),
])
def test_a_bad_setting_is_one_line_and_exit_2(tmp_path, env, args, says):
    assert says in error_line(cli(*args, env={"MODEL_DIR": str(tmp_path), **env}), 2)


@pytest.mark.parametrize("args", [
    ["versions", "--project", "1"],
    ["suspects", "--project", "1"],
    ["refine", "--project", "1"],
    ["worker", "--burst"],
    ["predict", "--project", "1", "--labels", "a,b"],
])
def test_an_unreachable_redis_is_named_without_its_password(tmp_path, args):
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"  # nothing listens there
    line = error_line(cli(*args, env={"MODEL_DIR": str(tmp_path), "REDIS_URL": url}, stdin='{"text": "x"}\n'), 1)
    assert line.startswith("Error: Redis at redis://:***@127.0.0.1:") and "cannot be reached" in line
    assert "hunter2" not in line


def test_malformed_input_names_the_file_and_line(tmp_path):
    env = {"MODEL_DIR": str(tmp_path)}
    broken = tmp_path / "set" / "test.jsonl"
    broken.parent.mkdir()
    broken.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y"\n', encoding="utf-8")
    assert error_line(cli("eval", "--dataset", str(broken), env=env), 2) == \
        f"Error: {broken}, line 3: not valid JSON (Expecting ',' delimiter, column 27)"
    broken.write_text('{"text": "a", "label": "x"}\n["b", "y"]\n', encoding="utf-8")
    assert error_line(cli("candidates", "--dataset", str(broken), env=env), 2) == \
        f"Error: {broken}, line 2: a JSON object is expected, not list"
    broken.write_text('{"text": "a", "label": "x"}\n{"label": "y"}\n', encoding="utf-8")
    assert error_line(cli("eval", "--dataset", str(broken), env=env), 2) == f"Error: {broken}: a row lacks 'text'"
    broken.write_text('{"text": "a"}\n', encoding="utf-8")
    assert "no row has a \"label\" string" in error_line(cli("eval", "--dataset", str(broken), env=env), 2)

    assert error_line(cli("predict", "--labels", "spam,ham", env=env, stdin='{"text": "a"}\n{"text": \n'), 2) == \
        "Error: stdin, line 2: not valid JSON (Expecting value, column 10)"
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"text": "a"}\n\n{"data": {"body": "b"}}\n', encoding="utf-8")
    assert error_line(cli("predict", "--labels", "spam,ham", "--input", str(tasks), env=env), 2) == \
        f"Error: {tasks}, line 3: data.text is missing (the label config reads $text)"


def test_a_file_read_beside_the_data_set_is_named(tmp_path):
    env = {"MODEL_DIR": str(tmp_path)}
    test = tmp_path / "test.jsonl"
    test.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n', encoding="utf-8")
    assert error_line(cli("bench", "--dataset", str(test), env=env), 2) == \
        f"Error: {tmp_path / 'train.jsonl'}: no such file (bench without --demos reads train.jsonl beside --dataset)"
    assert error_line(cli("eval", "--dataset", str(test), "--simulate", env=env), 2) == \
        f"Error: {tmp_path / 'train.jsonl'}: no such file (--simulate reads train.jsonl beside --dataset)"
    missing = cli("eval", "--dataset", str(tmp_path / "nope.jsonl"), env=env)  # click's own check: usage, then
    assert missing.returncode == 2 and "Traceback" not in missing.stderr  # the one line naming the file
    assert missing.stderr.strip().splitlines()[-1] == f"Error: Invalid value for '--dataset': File '{tmp_path / 'nope.jsonl'}' does not exist."
    rounds = cli("eval", "--dataset", str(test), "--simulate", "--rounds", "10,x", env=env)
    assert rounds.returncode == 2 and rounds.stderr.strip().endswith("comma-separated whole numbers, got '10,x'")
    seed = cli("eval", "--dataset", str(test), "--train-seed", "1", env=env)
    assert seed.returncode == 2 and seed.stderr.strip().endswith("--train-seed shuffles the annotations --simulate "
                                                                 "streams; it needs --simulate")


def publish(redis_conn, model_dir: str) -> ModelVersion:
    settings = Settings.from_env({"MODEL_DIR": model_dir})
    registry = VersionRegistry(redis_conn, engine_id(settings), Path(model_dir), ModelVersion)
    return registry.publish(PROJECT, ModelVersion(label="", lineage=parse_label_config(CONFIG).config_hash,
                                                  controls={"label": ControlRecipe()}, kind="label:calibrated",
                                                  metrics={"label": {"macro_f1": 0.8}}, gt_count=12))


def test_an_unknown_version_is_one_line_and_exit_2_and_json_parses(own_redis, model_dir):
    redis_conn = own_redis[1]
    versions = ("versions", "--project", str(PROJECT))
    assert error_line(cli(*versions, "--rollback", "v1", env=model_dir), 2) == \
        f"Error: project {PROJECT} has no stored versions"
    v1 = publish(redis_conn, model_dir["MODEL_DIR"])
    for args in (["--rollback", "v7"], ["show", "v7"], ["diff", "v1", "v7"], ["--json", "show", "v7"]):
        assert error_line(cli(*versions, *args, env=model_dir), 2) == \
            f"Error: project {PROJECT} has no version 'v7' (see: versions --project {PROJECT})"

    listed = json.loads(cli(*versions, "--json", env=model_dir).stdout)
    assert [(v["label"], v["current"]) for v in listed["versions"]] == [(v1.label.replace(".v1", ".v0"), False),
                                                                         (v1.label, True)]
    assert listed["versions"][1]["metrics"] == {"label": {"macro_f1": 0.8}} and listed["versions"][1]["gt_count"] == 12
    rolled = cli(*versions, "--rollback", "v0", "--json", env=model_dir)
    assert json.loads(rolled.stdout) == {"project": PROJECT, "current": v1.label.replace(".v1", ".v0")}
    assert json.loads(cli(*versions, "--json", "show", "v1", env=model_dir).stdout)["model_version"] == v1.label
    assert json.loads(cli(*versions, "show", "v1", "--json", env=model_dir).stdout)["model_version"] == v1.label
    assert json.loads(cli(*versions, "diff", "v0", "v1", "--json", env=model_dir).stdout)["to"] == v1.label
    assert json.loads(cli("suspects", "--project", str(PROJECT), "--json", env=model_dir).stdout)["controls"] == {}
    assert error_line(cli("suspects", "--project", str(PROJECT), "--control", "nope", env=model_dir), 2)


class _Refusing(http.server.BaseHTTPRequestHandler):
    """Answers every call as Label Studio does for a wrong token."""

    def do_GET(self):
        body = json.dumps({"detail": "Invalid token."}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def refusing_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_label_studio_unreachable_or_refusing_the_key_is_one_line_and_exit_1(model_dir, refusing_server):
    down = f"http://127.0.0.1:{free_port()}"
    for extra in ([], ["--dry-run"]):
        line = error_line(cli("preannotate", "--project", "3", *extra,
                              env={**model_dir, "LABEL_STUDIO_URL": down, "LABEL_STUDIO_API_KEY": "t" * 40}), 1)
        assert line.startswith(f"Error: Label Studio at {down} cannot be reached while reading project 3 (ConnectError")
    line = error_line(cli("preannotate", "--project", "3",
                          env={**model_dir, "LABEL_STUDIO_URL": refusing_server, "LABEL_STUDIO_API_KEY": "t" * 40}), 1)
    assert line == (f"Error: Label Studio at {refusing_server} refused the API key (401: Invalid token.) while "
                    "reading project 3: check LABEL_STUDIO_API_KEY")
