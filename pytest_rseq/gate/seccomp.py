"""The gate's seccomp probe: an rseq-blocking filter installed in a running process.

:func:`seccomp_after_start` starts ``python -m pytest_rseq.gate.seccomp ERRNO``
(this module's child side), which installs a seccomp filter that makes the
rseq syscall fail with ERRNO and then starts a thread: with glibc owning
registration, glibc aborts that thread's start. The crash is captured and
reported as a :class:`SeccompAfterStart`, never raised.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

from .._native import load
from ..engine.child_process import child_env, kill_group, signal_name
from ..engine.deadlines import CHILD_GRACE_S
from ..engine.driver import BLOCK_ERRNOS


@dataclass(frozen=True)
class SeccompAfterStart:
    """What happened when an rseq-blocking seccomp filter went in after start.

    ``outcome`` is ``"abort"`` (the new thread killed the process, as glibc
    >= 2.35 does when it owns registration: "rseq registration failed"),
    ``"survived"`` (the thread started: glibc does not register, or does not
    abort) or ``"error"`` (the scenario itself could not run).
    """

    errno: str
    outcome: str
    signal: str | None
    glibc_message: bool
    registration: str
    stderr: str

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-safe mapping."""
        return asdict(self)


def seccomp_after_start(
    errno_name: str = "ENOSYS", registration: str = "auto"
) -> SeccompAfterStart:
    """Install an rseq-blocking seccomp filter in a running child, then start a thread.

    The child is expected to die (glibc aborts); the crash is captured and
    reported, never raised. ``registration`` is ``"auto"`` or ``"own"`` (glibc's
    registration off by tunable: the thread then starts).

    Raises:
        ValueError: ``errno_name`` is not ENOSYS or EPERM, or a bad registration.
    """
    if errno_name not in BLOCK_ERRNOS:
        raise ValueError(f"errno_name must be ENOSYS or EPERM; got {errno_name!r}")
    if registration not in ("auto", "own"):
        raise ValueError(f"registration must be auto or own; got {registration!r}")
    proc = subprocess.Popen(
        [sys.executable, "-m", __name__, errno_name],
        env=child_env(registration),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=CHILD_GRACE_S)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc)
        out, err = proc.communicate()
    finally:
        kill_group(proc)
    stderr = err.decode(errors="replace")[-2000:]
    if timed_out:
        outcome, sig = "error", None
    elif proc.returncode < 0:
        outcome, sig = "abort", signal_name(-proc.returncode)
    elif proc.returncode == 0 and "thread-started" in out.decode(errors="replace"):
        outcome, sig = "survived", None
    else:
        outcome, sig = "error", None
    return SeccompAfterStart(
        errno=errno_name,
        outcome=outcome,
        signal=sig,
        glibc_message="rseq registration failed" in stderr,
        registration=registration,
        stderr=stderr,
    )


def _child(err: int) -> int:
    """Block rseq in this running process, then start a thread (glibc may abort)."""
    import threading

    _, lib = load()
    rc = lib.prseq_block_rseq(err)
    if rc < 0:
        sys.stderr.write(f"pytest-rseq: installing the seccomp filter failed: {os.strerror(-rc)}\n")
        return 3
    worker = threading.Thread(target=lambda: None)
    worker.start()
    worker.join()
    sys.stdout.write("thread-started\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in BLOCK_ERRNOS:
        sys.exit("usage: python -m pytest_rseq.gate.seccomp ENOSYS|EPERM")
    sys.exit(_child(BLOCK_ERRNOS[sys.argv[1]]))
