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


def test_stopping_a_child_also_stops_what_it_forked(tmp_path):
    """Like an RQ worker whose job 'horse' outlives it: the child ignores SIGTERM and has forked a grandchild."""
    import os
    import time

    from backend.supervisor import stop_process_groups

    pid_file = tmp_path / "grandchild.pid"
    child_code = textwrap.dedent(f"""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(pid_file)!r}, "w").write(str(grandchild.pid))
        time.sleep(120)
    """)
    child = subprocess.Popen([sys.executable, "-c", child_code], start_new_session=True)
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.1)
    grandchild = int(pid_file.read_text())
    stop_process_groups([child], grace=1.0)
    assert child.poll() is not None
    time.sleep(0.5)
    try:
        os.kill(grandchild, 0)
        alive = open(f"/proc/{grandchild}/stat").read().split()[2] != "Z"
    except ProcessLookupError:
        alive = False
    assert not alive
