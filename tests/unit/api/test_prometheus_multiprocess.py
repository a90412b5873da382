"""How `serve` and gunicorn set up PROMETHEUS_MULTIPROC_DIR: emptied at each start, exported to
the web and the RQ worker, a private one for a gunicorn started alone, dead workers' live gauges
dropped; and backend.supervisor, read by gunicorn as its config, sets nothing but its hooks."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import gunicorn.config

from backend import supervisor
from backend.settings import Settings


def test_gunicorn_reads_only_the_hooks_from_the_supervisor_module():
    settings = {s.name for s in gunicorn.config.KNOWN_SETTINGS}
    assert settings & set(vars(supervisor)) == {"on_starting", "child_exit", "on_exit"}
    command = supervisor.gunicorn_command(Settings.from_env({}))
    assert command[command.index("--config") + 1] == "python:backend.supervisor"


def test_the_metrics_dir_is_emptied_of_old_values_at_each_start(tmp_path):
    default = supervisor.fresh_metrics_dir(tmp_path)
    assert default == tmp_path / "metrics" and default.is_dir()
    (default / "counter_123.db").write_bytes(b"old run")
    (default / "README").write_text("not ours")
    assert supervisor.fresh_metrics_dir(tmp_path) == default
    assert sorted(p.name for p in default.iterdir()) == ["README"]
    chosen = tmp_path / "operator"
    assert supervisor.fresh_metrics_dir(tmp_path, str(chosen)) == chosen and chosen.is_dir()


def test_serve_exports_one_fresh_dir_to_gunicorn_and_the_worker(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(supervisor.subprocess, "Popen", lambda cmd, env, **kw: started.append(env) or SimpleNamespace())
    monkeypatch.setattr(supervisor, "prepare_model", lambda settings: None)
    monkeypatch.delenv(supervisor.METRICS_DIR_ENV, raising=False)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "histogram_9.db").write_bytes(b"old run")
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:6379/13"})
    supervisor.Stack(settings).__enter__()
    assert [env[supervisor.METRICS_DIR_ENV] for env in started] == [str(tmp_path / "metrics")] * 2
    assert list((tmp_path / "metrics").iterdir()) == []


def test_a_gunicorn_started_alone_gets_a_private_dir_removed_at_exit(monkeypatch):
    monkeypatch.setenv(supervisor.METRICS_DIR_ENV, "")  # unset, and restored after the hook set it
    server = SimpleNamespace()
    supervisor.on_starting(server)
    private = os.environ[supervisor.METRICS_DIR_ENV]
    assert os.path.isdir(private) and private == server.llmlb_metrics_dir
    supervisor.on_exit(server)
    assert not os.path.exists(private)


def test_a_given_dir_is_kept(monkeypatch, tmp_path):
    given = tmp_path / "not-yet"
    monkeypatch.setenv(supervisor.METRICS_DIR_ENV, str(given))
    server = SimpleNamespace()
    supervisor.on_starting(server)
    supervisor.on_exit(server)
    assert os.environ[supervisor.METRICS_DIR_ENV] == str(given) and given.is_dir()


def test_a_dead_workers_live_gauges_leave_but_its_counters_stay(monkeypatch, tmp_path):
    monkeypatch.setenv(supervisor.METRICS_DIR_ENV, str(tmp_path))
    for name in ("gauge_livemin_41.db", "gauge_livemax_41.db", "counter_41.db", "gauge_livemin_42.db"):
        (tmp_path / name).write_bytes(b"")
    supervisor.child_exit(SimpleNamespace(), SimpleNamespace(pid=41))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_41.db", "gauge_livemin_42.db"]


def test_processes_sharing_the_dir_are_summed(tmp_path):
    """Two processes count into the directory; a third one's /metrics text holds their sum."""
    count = textwrap.dedent("""
        import sys
        from backend.api.prometheus import Metrics
        metrics = Metrics()
        assert metrics.multiprocess
        for _ in range(int(sys.argv[1])):
            metrics.observe_request("ml.health", "/health", "GET", 200, 0.01)
        metrics.observe_predict(3, 0.5)
    """)
    render = "from backend.api.prometheus import Metrics; print(Metrics().render({}))"
    env = {**os.environ, supervisor.METRICS_DIR_ENV: str(tmp_path)}
    for n in ("3", "4"):
        subprocess.run([sys.executable, "-c", count, n], env=env, check=True, timeout=60)
    text = subprocess.run([sys.executable, "-c", render], env=env, check=True, timeout=60,
                          capture_output=True, text=True).stdout
    assert 'llmlb_http_requests_total{endpoint="ml.health",status="200"} 7.0' in text
    assert 'llmlb_http_request_duration_seconds_count{method="GET",route="/health",status="200"} 7.0' in text
    assert "llmlb_tasks_predicted_total 6.0" in text
