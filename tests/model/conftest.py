"""A real llama-cpp-python OpenAI-compatible server (`python -m llama_cpp.server`) on loopback,
serving the same embedded GGUF as the local engine, and the stdlib protocol peer."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, python
from tests.model.openai_peer import Peer


class LlamaServer:
    """`python -m llama_cpp.server --model <gguf> --n_threads 2 --chat_format gemma` on a free port."""

    def __init__(self, model_path: Path, log_path: Path):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        cmd = [python(), "-m", "llama_cpp.server", "--model", str(model_path), "--host", "127.0.0.1",
               "--port", str(self.port), "--n_threads", "2", "--chat_format", "gemma"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120.0) -> LlamaServer:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                if requests.get(self.base_url + "/models", timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"llama_cpp.server not ready: {self.log_path.read_text(errors='replace')[-2000:]}")

    def alive(self) -> bool:
        import requests

        try:
            return self.proc.poll() is None and requests.get(self.base_url + "/models", timeout=5).ok
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def llama_server_factory(settings, tmp_path_factory):
    from backend.engines.factory import prepare_model

    model_path = prepare_model(settings)  # the embedded model, as the local engine uses it
    started: list[LlamaServer] = []

    def start() -> LlamaServer:
        server = LlamaServer(model_path, tmp_path_factory.mktemp("llama-server") / "server.log")
        started.append(server)
        return server.wait_ready()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def llama_server(llama_server_factory) -> LlamaServer:
    """One shared server for the tests that do not kill it."""
    return llama_server_factory()


@pytest.fixture
def peer_factory():
    peers: list[Peer] = []

    def start(answer) -> Peer:
        peer = Peer(answer)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.close()
