"""/ui on real parts: versions published by real refinement jobs (run inline on the scripted engine,
which only counts words, so the embedding head learns and wins), real RQ jobs run by a real
`worker --burst` process, a real Redis; the page through Flask, and in a real headless Chromium
against a real gunicorn.

UI_SCREENSHOT=docs/screenshot-ui.png with the browser test writes the docs' screenshot.
"""
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
import requests

from backend.app import create_app
from backend.engines.scripted import ScriptedEngine
from backend.evaluation.datasets import load_dataset
from backend.labeling.model_version import ModelVersion
from backend.labeling.prompt import PromptVersion
from backend.labeling.recipe import ControlRecipe
from backend.refinement.job import run_refinement
from backend.refinement.scheduler import RefinementScheduler
from backend.settings import Settings
from backend.store.redis import EmbeddedRedis
from backend.store.versions import VersionRegistry
from backend.worker import make_queue
from tests.annotated_project import annotate
from tests.conftest import DATASETS, ROOT

PROJECT, UNCONFIGURED, HOSTILE = 64, 65, 66
DATA = load_dataset(DATASETS / "sms_spam" / "train.jsonl", limit=192)
AUTH = ("ui-user", "ui-pass-0123456789abc")
EVIL = '<svg onload=alert("x")>'  # a version label is also a file name: no slash
EVIL_CONTROL = '<img src=x onerror=alert(1)>'


def _env(model_dir: Path, redis_url: str) -> dict:
    """What the test, the worker and gunicorn all run with (one fingerprint of the learning settings)."""
    return {"REDIS_URL": redis_url, "MODEL_DIR": str(model_dir), "RQ_QUEUE_NAME": f"test-ui-{uuid.uuid4().hex[:8]}",
            "REFINE_MIN_NEW": "100000", "REFINE_DELAY": "3600", "REFINE_MAX_SHOTS": "0",
            "REFINE_REWRITE_ROUNDS": "0", "REFINE_REASONING_SAMPLES": "0", "LLM_N_THREADS": "1",
            "REFINE_TUNE_SECONDS": "0"}


def seed(conn: redis.Redis, env: dict) -> dict:
    """Project 64 learns four times on growing ground truth (real jobs, inline), then a real worker
    runs the START_TRAINING job that follows (nothing changed: `unchanged`) and the job of a project
    whose label config never arrived (`skipped`); a later change leaves a `scheduled` job. Project 66
    holds a version whose names are hostile markup."""
    settings = Settings.from_env(dict(os.environ, **env))
    outcomes = []
    for upto in (24, 48, 96, 192):  # about 20 s in all
        annotate(conn, DATA, PROJECT, range(upto))
        outcomes.append(run_refinement(settings, conn, PROJECT, engine=ScriptedEngine()))
    annotate(conn, DATA, UNCONFIGURED, range(3), configured=False)
    scheduler = RefinementScheduler(conn, make_queue(settings, conn), settings)
    scheduler.notify(PROJECT, changes=0, force=True, reason="START_TRAINING")
    scheduler.notify(UNCONFIGURED, changes=3, force=True, reason="START_TRAINING")
    worker = subprocess.run([sys.executable, "-m", "backend", "worker", "--burst"], env=dict(os.environ, **env),
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, worker.stderr[-3000:]
    scheduler.notify(PROJECT, changes=1, reason="ANNOTATION_UPDATED")  # debounced: waits REFINE_DELAY
    hostile = VersionRegistry(conn, EVIL, Path(env["MODEL_DIR"]), ModelVersion)
    evil = hostile.publish(HOSTILE, ModelVersion(label="", lineage="0badc0de" * 5, kind=f"{EVIL_CONTROL}:head",
                                                 controls={EVIL_CONTROL: ControlRecipe(PromptVersion("plain"))},
                                                 metrics={EVIL_CONTROL: {"macro_f1": 0.5, "ece": 0.1}}, gt_count=9))
    published = [o["model_version"] for o in outcomes if o["status"] in ("published", "refreshed")]
    return {"outcomes": outcomes, "published": published, "evil": evil.label, "settings": settings}


@pytest.fixture(scope="module")
def seeded(redis_url, tmp_path_factory):
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    env = _env(tmp_path_factory.mktemp("ui-model-dir"), redis_url)
    yield {**seed(conn, env), "env": env, "conn": conn}
    conn.flushdb()


def _section(html: str, project: int) -> str:
    start = html.index(f'<section class="project" id="project-{project}">')
    return html[start:html.index("</section>", start)]


def _client(seeded, **extra):
    settings = Settings.from_env(dict(os.environ, **seeded["env"], **extra))
    app = create_app(settings, engine_factory=ScriptedEngine, redis_conn=seeded["conn"], start_engine=False)
    return app.test_client()


def test_the_page_lists_projects_versions_curves_suspects_and_jobs(seeded):
    page = _client(seeded).get("/ui")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert f'id="project-{PROJECT}"' in html and f'id="project-{UNCONFIGURED}"' in html
    assert len(seeded["published"]) >= 2, seeded["outcomes"]
    for label in seeded["published"]:
        assert f"<code>{label}</code>" in html
        assert f'href="versions/{label}?project={PROJECT}"' in html
        assert f'href="versions/{label}/report?project={PROJECT}"' in html  # each job stored its report
    ours = _section(html, PROJECT)
    current = seeded["published"][-1]
    assert re.search(rf'<tr class="version current"><td[^>]*><code>{re.escape(current)}</code>', ours)
    assert f"Current version <code>{current}</code>" in ours
    assert "ground truth: <b>192</b> labelled tasks" in ours and "<b>label</b> · macro-F1 " in ours
    assert ours.count('<polyline class="series"') == 1 and ours.count("<circle") == len(seeded["published"])
    assert f'href="projects/{PROJECT}/suspects"' in ours
    assert '<span class="badge finished">finished</span>' in ours
    assert '<span class="badge unchanged">unchanged</span>' in ours
    assert '<span class="badge scheduled">scheduled</span>' in ours and "START_TRAINING" in ours
    other = _section(html, UNCONFIGURED)
    assert '<span class="badge skipped">skipped</span>' in other and "No label config stored yet" in other


def test_the_page_follows_the_json_routes(seeded):
    client = _client(seeded)
    html = client.get(f"/ui?project={PROJECT}").get_data(as_text=True)
    for path in re.findall(r'href="([^"#]+)"', html):
        if path.startswith(("versions", "projects/", "jobs")):
            r = client.get("/" + path.replace("&amp;", "&"))
            assert r.status_code == 200, (path, r.get_data(as_text=True)[:300])
    suspects = client.get(f"/projects/{PROJECT}/suspects?limit=500").json
    shown = re.search(rf'href="projects/{PROJECT}/suspects"><b>(\d+)</b> open', html)
    assert shown and int(shown.group(1)) == sum(len(c["suspects"]) for c in suspects["controls"].values())


def test_hostile_names_are_escaped(seeded):
    html = _client(seeded).get(f"/ui?project={HOSTILE}").get_data(as_text=True)
    assert EVIL not in html and EVIL_CONTROL not in html and "<script" not in html
    assert "&lt;svg onload=alert(&#34;x&#34;)&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert f'id="project-{PROJECT}"' not in html  # ?project= shows that one only


def test_basic_auth_and_the_secret_path(seeded):
    client = _client(seeded, BASIC_AUTH_USER=AUTH[0], BASIC_AUTH_PASS=AUTH[1], WEBHOOK_SECRET="ui-secret-0123456789")
    denied = client.get("/ui")
    assert denied.status_code == 401 and denied.json["field"] == "Authorization"
    assert denied.headers["WWW-Authenticate"].startswith("Basic")
    assert client.get("/ui", auth=(AUTH[0], "wrong-password-000000")).status_code == 401
    assert client.get("/ui", auth=AUTH).status_code == 200
    behind_secret = client.get("/ui-secret-0123456789/ui", auth=AUTH)
    assert behind_secret.status_code == 200 and f'id="project-{PROJECT}"' in behind_secret.get_data(as_text=True)
    assert client.get("/ui-secret-0123456789/ui").status_code == 401
    assert client.get("/").json["status"] in ("UP", "DOWN")  # `/` stays the public health route
    spec = client.get("/openapi.json", auth=AUTH).json
    assert "security" not in spec["paths"]["/ui"]["get"]  # the default: basic auth


@pytest.mark.parametrize("query, field", [
    ("project=abc", "project"), ("project=0", "project"), ("project=" + "9" * 30, "project"),
    ("jobs=-1", "jobs"), ("jobs=51", "jobs"), ("jobs=ten", "jobs"), ("jobs=%D9%A1", "jobs"),
])
def test_bad_parameters_are_a_400_naming_the_field(seeded, query, field):
    r = _client(seeded).get(f"/ui?{query}")
    assert r.status_code == 400 and r.json["field"] == field, r.get_data(as_text=True)


def test_jobs_limits_the_jobs_listed(seeded):
    client = _client(seeded)
    assert client.get(f"/ui?project={PROJECT}&jobs=0").get_data(as_text=True).count('<tr class="job">') == 0
    assert client.get(f"/ui?project={PROJECT}&jobs=1").get_data(as_text=True).count('<tr class="job">') == 1


def test_past_the_cap_projects_are_linked_by_id(seeded, monkeypatch):
    from backend.api import ui

    monkeypatch.setattr(ui, "MAX_PROJECTS", 2)
    html = _client(seeded).get("/ui").get_data(as_text=True)
    assert html.count('<section class="project"') == 2 and f'id="project-{HOSTILE}"' not in html
    assert f'1 more project:\n<a href="ui?project={HOSTILE}">{HOSTILE}</a>' in html and "3 projects" in html


def test_an_empty_backend_shows_how_to_start(tmp_path):
    embedded = EmbeddedRedis(tmp_path)
    try:
        settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": embedded.url})
        client = create_app(settings, engine_factory=ScriptedEngine, start_engine=False).test_client()
        page = client.get("/ui")
        assert page.status_code == 200
        assert "No project yet" in page.get_data(as_text=True) and "<section" not in page.get_data(as_text=True)
    finally:
        embedded.close()


def chromium() -> str:
    """Debian's chromium, installed on demand as tests/e2e installs Label Studio: skipped only where
    it is missing and cannot be installed (not root, no apt-get)."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("headless Chromium is not installed, and `apt-get install chromium` needs root")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "chromium"]
    for command in (install, ["apt-get", "update"], install):  # an old package list: update, then again
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
        if command[1] == "install" and done.returncode == 0:
            break
    found = shutil.which("chromium")
    assert found, f"apt-get install chromium failed: {done.stderr[-2000:]}"
    return found


def headless(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{uuid.uuid4().hex[:6]}"
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--disable-background-networking", "--disable-component-update", "--no-first-run",
                           f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.service
@pytest.mark.model
def test_a_real_browser_renders_the_page_from_gunicorn(seeded, server_factory, tmp_path):
    env = {k: v for k, v in seeded["env"].items() if k != "MODEL_DIR"}  # the server's is the model's
    server = server_factory({**env, "BASIC_AUTH_USER": AUTH[0], "BASIC_AUTH_PASS": AUTH[1]})
    assert requests.get(server.url + "/ui", timeout=10).status_code == 401
    url = server.url.replace("http://", f"http://{AUTH[0]}:{AUTH[1]}@") + "/ui"
    dom = headless("--dump-dom", url, tmp_path=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert f'id="project-{PROJECT}"' in html and "<svg" in html and '<polyline class="series"' in html
    assert all(f"<code>{label}</code>" in html for label in seeded["published"])
    assert html.count('class="version') >= len(seeded["published"]) and '<tr class="job">' in html
    shot = tmp_path / "ui.png"
    done = headless(f"--screenshot={shot}", "--window-size=1280,930", url, tmp_path=tmp_path)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 30_000
    if os.environ.get("UI_SCREENSHOT"):
        shutil.copy(shot, os.environ["UI_SCREENSHOT"])
