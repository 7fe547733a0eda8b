"""Ctrl-C during a long run stops it promptly and leaves no process behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

# Liveness bound, not a performance threshold: the run asks for 120 s.
HANG_LIMIT_S = 60


@pytest.mark.parametrize("isolate", [True, False])
def test_ctrl_c_stops_a_long_run(isolate: bool, process_tag: Callable[..., list[int]]) -> None:
    code = (
        # A shell's background job starts with SIGINT ignored, and Python then keeps it so.
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "import pytest_rseq, sys; print('start', flush=True); "
        f"pytest_rseq.run('counter', threads=2, duration=120, isolate={isolate})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"start"
    time.sleep(1.0)  # let the workers start
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=HANG_LIMIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the run ignored Ctrl-C")
    assert proc.returncode != 0
    assert b"KeyboardInterrupt" in err
    assert process_tag(within_s=5.0) == [], "a child process outlived the interrupted run"
