"""`exit_on_sigterm`: a SIGTERM unwinds `with` blocks (so Stack stops its children) instead of killing outright."""
import signal
import subprocess
import sys
import textwrap


def test_sigterm_unwinds_with_blocks(tmp_path):
    marker = tmp_path / "cleaned-up"
    child = textwrap.dedent(f"""
        import contextlib, os, signal, time
        from backend.supervisor import exit_on_sigterm

        @contextlib.contextmanager
        def stack():
            try:
                yield
            finally:
                open({str(marker)!r}, "w").write("stopped children")

        exit_on_sigterm()
        with stack():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
    """)
    done = subprocess.run([sys.executable, "-c", child], timeout=60)
    assert done.returncode == 128 + signal.SIGTERM
    assert marker.read_text() == "stopped children"
