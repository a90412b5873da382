"""The compose file declares web, worker and a persistent Redis, passes every setting through, and
validates with docker compose; the image runs gunicorn as `serve` does."""
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT

# Settings compose fixes for its containers instead of taking them from the operator's environment.
PINNED = {"HOST": "0.0.0.0", "PORT": "9090", "MODEL_DIR": "/data", "REDIS_URL": "redis://redis:6379/0",
          "REDIS_HOST": "redis", "REDIS_PORT": "6379"}


class RecordingEnv(dict):
    """An empty environment that notes every variable Settings.from_env asks for."""

    def __init__(self):
        super().__init__()
        self.asked: set[str] = set()

    def get(self, name, default=None):
        self.asked.add(name)
        return super().get(name, default)

    def __getitem__(self, name):
        self.asked.add(name)
        return super().__getitem__(name)

    def __contains__(self, name):
        self.asked.add(name)
        return super().__contains__(name)


def settings_variables() -> set[str]:
    """Every variable settings.py reads: those from_env asks for, and, in case a read is ever made
    conditional, every quoted NAME handed to env.get / _int / _float / _bool / _choice there."""
    from backend.settings import Settings

    env = RecordingEnv()
    Settings.from_env(env)
    source = (ROOT / "backend" / "settings.py").read_text()
    quoted = re.findall(r'(?:env\.get\(|_(?:int|float|bool|choice)\(env,\s*)"([A-Z][A-Z0-9_]+)"', source)
    return env.asked | set(quoted)


def not_passed(service_env: dict, names: set[str]) -> list[str]:
    """The names a compose service's environment does not pass from the operator's environment
    (`NAME: ${NAME:-default}`) or pin to PINNED's value."""
    missing = []
    for name in sorted(names):
        value = str(service_env.get(name, ""))
        if name in PINNED:
            ok = value == PINNED[name]
        else:
            ok = re.fullmatch(r"\$\{%s(:?-[^}]*)?\}" % name, value) is not None
        if not ok:
            missing.append(name)
    return missing


def test_every_setting_reaches_web_and_worker():
    names = settings_variables()
    assert {"WEBHOOK_SECRET", "BASIC_AUTH_PASS", "AUTH_BY_PROXY", "WEBHOOK_MAX_BYTES"} <= names
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for service in ("web", "worker"):
        assert not_passed(services[service]["environment"], names) == [], service


def test_a_setting_missing_from_compose_is_reported():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    env = dict(services["web"]["environment"])
    del env["WEBHOOK_SECRET"]
    env["BASIC_AUTH_PASS"] = "a-fixed-password-in-the-file"
    env["HOST"] = "127.0.0.1"
    assert not_passed(env, settings_variables()) == ["BASIC_AUTH_PASS", "HOST", "WEBHOOK_SECRET"]


def test_the_image_runs_gunicorn_with_the_redacting_logger_as_serve_does():
    from backend.settings import Settings
    from backend.supervisor import gunicorn_command

    command = gunicorn_command(Settings())
    logger = command[command.index("--logger-class") + 1]
    cmd_line = next(line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    assert f"--logger-class {logger} " in cmd_line


def test_compose_has_web_worker_and_append_only_redis():
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = spec["services"]
    assert set(services) >= {"web", "worker", "redis"}
    assert "--appendonly" in services["redis"]["command"]
    assert services["worker"]["command"][-1] == "worker"
    assert services["web"]["environment"]["REDIS_URL"].startswith("redis://redis:")


@pytest.mark.parametrize("cmd", [["docker", "compose"], ["docker-compose"]])
def test_compose_config_validates(cmd):
    if shutil.which(cmd[0]) is None:
        pytest.skip(f"{cmd[0]} not installed")
    probe = subprocess.run(cmd + ["version"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"{' '.join(cmd)} not available")
    result = subprocess.run(cmd + ["config", "-q"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_decode_that_dies_by_a_signal_is_reported_with_the_rebuild_advice():
    import signal
    import sys

    from backend.engines.factory import smoke_test_decode
    from backend.errors import EngineError

    smoke_test_decode([sys.executable, "-c", "print('decoded')"])
    with pytest.raises(EngineError, match="SIGSEGV.*pip cache remove llama_cpp_python"):
        smoke_test_decode([sys.executable, "-c", f"import os; os.kill(os.getpid(), {int(signal.SIGSEGV)})"])
    with pytest.raises(EngineError, match="boom"):
        smoke_test_decode([sys.executable, "-c", "raise SystemExit('boom')"])
