"""The compose file declares web, worker and a persistent Redis, hands .env to both, and
validates with docker compose; the image runs gunicorn as `serve` does. Supply chain: base images are
pinned by digest, the worker does not inherit the web's healthcheck, and the locked requirements hash
every package and pin every top-level requirement of their .in file (docs/development.md)."""
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT

# Settings compose fixes for its containers, where they win over the operator's .env.
PINNED = {"HOST": "0.0.0.0", "PORT": "9090", "MODEL_DIR": "/data", "REDIS_URL": "redis://redis:6379/0",
          "REDIS_HOST": "redis", "REDIS_PORT": "6379"}


def compose_problems(service: dict) -> list[str]:
    """What keeps a compose service from getting the operator's settings: no optional .env
    env_file, a pinned value changed, or a variable no setting reads."""
    from backend.settings import known_variables

    problems = []
    env_files = service.get("env_file") or []
    if not any(isinstance(f, dict) and f.get("path") == ".env" and f.get("required") is False for f in env_files):
        problems.append("env_file .env (required: false)")
    env = service.get("environment") or {}
    problems += [name for name, value in PINNED.items() if str(env.get(name)) != value]
    problems += [f"unknown {name}" for name in env if name not in known_variables()]
    return problems


def test_every_setting_reaches_web_and_worker_from_the_env_file():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for service in ("web", "worker"):
        assert compose_problems(services[service]) == [], service
    assert services["web"]["environment"]["LLM_MODEL"].endswith(":-/opt/models/gemma-3-270m-q4_k_m.gguf}")


def test_a_service_without_the_env_file_or_with_a_changed_pin_is_reported():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    web = dict(services["web"])
    del web["env_file"]
    web["environment"] = dict(web["environment"], HOST="127.0.0.1", REFINE_MINNEW="3")
    assert compose_problems(web) == ["env_file .env (required: false)", "HOST", "unknown REFINE_MINNEW"]


def test_the_image_runs_gunicorn_with_the_redacting_logger_as_serve_does():
    from backend.settings import Settings
    from backend.supervisor import gunicorn_command

    command = gunicorn_command(Settings())
    logger = command[command.index("--logger-class") + 1]
    cmd_line = next(line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    assert f"--logger-class {logger} " in cmd_line


def test_the_image_command_takes_the_worker_and_thread_aliases_as_settings_do():
    cmd_line = next(line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    script = json.loads(cmd_line[len("CMD "):])[-1].replace("exec gunicorn", "echo", 1)

    def expanded(**env) -> list[str]:
        out = subprocess.run(["sh", "-c", script], env={"PATH": os.environ["PATH"], "HOST": "0.0.0.0", "PORT": "9090",
                                                          **env}, capture_output=True, text=True, check=True)
        words = out.stdout.split()
        return [words[words.index("--workers") + 1], words[words.index("--threads") + 1]]

    assert expanded() == ["1", "4"]
    assert expanded(WORKERS="3", THREADS="2") == ["3", "2"]
    assert expanded(WEB_WORKERS="2", WORKERS="3", WEB_THREADS="8", THREADS="2") == ["2", "8"]


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


# Supply chain (docs/development.md, "Supply chain"): each hand-edited .in and the lock compiled from it.
LOCKS = {"requirements-pip.in": "requirements-pip.txt", "requirements.in": "requirements.txt",
         "requirements-dev.in": "requirements-dev.txt"}
DIGEST = r"@sha256:[0-9a-f]{64}"


def logical_lines(path):
    """A requirements file's lines with continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        if line:
            yield line


def in_requirements(name: str) -> list:
    """The requirements of a .in file and of the .in files it includes with -r (not the -c constraints)."""
    from packaging.requirements import Requirement

    found = []
    for line in logical_lines(ROOT / name):
        if line.startswith(("-r ", "--requirement ")):
            found += in_requirements(line.split(None, 1)[1])
        elif not line.startswith("-"):
            found.append(Requirement(line))
    return found


def locked(name: str) -> dict:
    """A lock's {canonical name: (version, hashes)}; fails on a line that is not `name==version --hash...`."""
    from packaging.utils import canonicalize_name

    pins = {}
    for line in logical_lines(ROOT / name):
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})*)", line)
        assert match, f"{name}: not a pinned, hashed requirement: {line[:120]}"
        pins[canonicalize_name(match[1])] = (match[2], re.findall(r"sha256:([0-9a-f]{64})", match[3]))
    return pins


@pytest.mark.parametrize("lock", sorted(LOCKS.values()))
def test_every_locked_package_is_pinned_with_hashes(lock):
    pins = locked(lock)
    assert pins
    assert [name for name, (_, hashes) in pins.items() if not hashes] == []


@pytest.mark.parametrize("source, lock", sorted(LOCKS.items()))
def test_a_lock_pins_every_top_level_requirement_of_its_in_file_at_that_version(source, lock):
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    pins = locked(lock)
    drift = []
    for req in in_requirements(source):
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{source}: pin {req} with =="
        name = canonicalize_name(req.name)
        if name not in pins or Version(pins[name][0]) != Version(specs[0].version):
            drift.append(f"{req} locked as {pins.get(name, ('nothing',))[0]}")
    assert drift == [], f"{lock} is stale: run `make lock`"


def test_the_dev_lock_holds_the_runtime_and_pip_locks_unchanged():
    dev = locked("requirements-dev.txt")
    for lock in ("requirements.txt", "requirements-pip.txt"):
        assert {name: pin for name, pin in locked(lock).items() if dev.get(name) != pin} == {}, lock


def test_torch_is_the_cpu_build_and_no_cuda_package_is_locked():
    for lock in LOCKS.values():
        pins = locked(lock)
        assert not [name for name in pins if name.startswith("nvidia-") or name == "triton"], lock
        if "torch" in pins:
            assert pins["torch"][0].endswith("+cpu"), lock


# The project itself (pyproject.toml, for the `llm-labeling` command) is installed after the locks: its
# dependencies are the locks' (--no-deps), its build backend the locked setuptools (--no-build-isolation),
# and nothing may come from an index (--no-index).
PROJECT_INSTALL = "--no-deps --no-build-isolation --no-index"


def test_make_and_the_image_install_only_the_locks_with_hashes():
    makefile = (ROOT / "Makefile").read_text()
    installs = re.findall(r"pip install ([^\n]*)", makefile)
    assert installs[:2] == ["--require-hashes -r requirements-pip.txt", "--require-hashes -r requirements-dev.txt"]
    assert len(installs) == 3 and installs[2].startswith(PROJECT_INSTALL) and installs[2].endswith("-e ."), installs
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    installs = [" ".join(cmd.split()) for cmd in re.findall(r"pip install ([^&\n]*)", dockerfile)]
    assert len(installs) == 3 and all(cmd.startswith("--require-hashes") for cmd in installs[:2]), installs
    assert installs[0].endswith("-r /app/requirements-pip.txt") and installs[1].endswith("-r /app/requirements.txt")
    assert installs[2].startswith(PROJECT_INSTALL) and installs[2].endswith("-e /app"), installs
    assert re.search(r"^test: .*\baudit\b", makefile, re.M), "make test runs the audit"


def test_the_project_declares_the_console_script_and_no_unlocked_dependency():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {"llm-labeling": "backend.cli:main"}
    assert project["project"]["dependencies"] == []  # they are the hash-locked requirements*.txt
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["backend", "backend.*"]
    locked_setuptools = locked("requirements.txt")["setuptools"][0]  # the build backend, installed by the lock
    from packaging.specifiers import SpecifierSet

    (requirement,) = project["build-system"]["requires"]
    assert locked_setuptools in SpecifierSet(requirement.removeprefix("setuptools")), locked_setuptools
    # a fresh clone's `make install` installs the project when pyproject.toml changes, too
    assert re.search(r"^\$\(STAMP\): .*\bpyproject\.toml\b", (ROOT / "Makefile").read_text(), re.M)
    assert "COPY --chown=app pyproject.toml /app/" in (ROOT / "Dockerfile").read_text()


def test_every_ignored_vulnerability_is_explained_in_the_docs():
    ignored = re.search(r"^AUDIT_IGNORE :?= *(.*)$", (ROOT / "Makefile").read_text(), re.M)[1].split()
    docs = (ROOT / "docs" / "development.md").read_text()
    assert [vuln for vuln in ignored if vuln not in docs] == []


def test_base_images_are_pinned_by_digest():
    froms = re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert froms and [image for image in froms if not re.search(DIGEST + "$", image)] == []
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    built = {spec["image"] for spec in services.values() if "build" in spec}
    pulled = {name: spec["image"] for name, spec in services.items() if spec.get("image") not in built}
    assert "redis" in pulled
    assert {name: image for name, image in pulled.items() if not re.search(DIGEST + "$", image)} == {}


def test_the_worker_does_not_inherit_the_web_healthcheck():
    assert re.search(r"^HEALTHCHECK .*/health", (ROOT / "Dockerfile").read_text(), re.M)
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["worker"]["image"] == services["web"]["image"]
    check = services["worker"].get("healthcheck", {})
    assert check.get("disable") is True or (check.get("test") and "/health" not in str(check["test"]))
    assert "healthcheck" not in services["web"]
