"""Cross-check of user-space abort counts against the kernel's ``rseq:rseq_ip_fixup``.

Opt-in (``PYTEST_RSEQ_PERF=1``) and only where ``perf`` is installed and the
tracepoint is visible in tracefs: the child then runs under
``perf stat -x, -e rseq:rseq_ip_fixup`` and the oracle reports the count and
its difference from the aborts the workload's handlers counted.
"""

from __future__ import annotations

import os
import shutil
import signal
from typing import Any

PERF_EVENT = "rseq:rseq_ip_fixup"
PERF_ENV = "PYTEST_RSEQ_PERF"


def perf_status() -> dict[str, Any]:
    """Whether the ``rseq:rseq_ip_fixup`` cross-check can run, and why not.

    It runs only when asked (``PYTEST_RSEQ_PERF=1``), ``perf`` is installed and
    the tracepoint is visible in tracefs.
    """
    from .capabilities import perf_tracepoints

    if not perf_tracepoints():
        return {"available": False, "reason": f"no {PERF_EVENT} tracepoint in tracefs"}
    if not shutil.which("perf"):
        return {"available": False, "reason": "perf is not installed"}
    if os.environ.get(PERF_ENV) != "1":
        return {"available": False, "reason": f"not requested ({PERF_ENV}=1 turns it on)"}
    return {"available": True, "reason": None}


def perf_wrapper(tmp: str) -> tuple[list[str], str | None]:
    """The argv prefix that counts the child's rseq aborts with perf, and its output file."""
    if not perf_status()["available"]:
        return [], None
    out = os.path.join(tmp, "perf.csv")
    return ["perf", "stat", "-x,", "-e", PERF_EVENT, "-o", out, "--"], out


def read_perf(path: str | None) -> dict[str, Any]:
    """Parse ``perf stat -x,`` output into ``{"available", "fixups" | "reason"}``."""
    if path is None:
        return perf_status()
    try:
        with open(path) as fh:
            for line in fh:
                fields = line.strip().split(",")
                if len(fields) > 2 and fields[2] == PERF_EVENT and fields[0].isdigit():
                    return {"available": True, "fixups": int(fields[0])}
    except OSError as exc:
        return {"available": False, "reason": f"perf wrote no output: {exc}"}
    return {"available": False, "reason": "perf output has no rseq_ip_fixup count"}


def perf_crash(stderr: str) -> str | None:
    """The signal that killed a child run under ``perf stat``, from perf's message.

    perf exits 0 when its workload dies by a signal and prints
    ``<argv0>: <strsignal text>`` instead, so the exit status alone would hide
    the crash.
    """
    for sig in signal.Signals:
        text = signal.strsignal(sig)
        if text and f": {text}" in stderr:
            return sig.name
    return None
