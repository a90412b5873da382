"""The compose file declares web, worker and a persistent Redis, and validates with docker compose."""
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT


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
