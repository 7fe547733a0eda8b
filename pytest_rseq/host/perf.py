"""Cross-check of user-space abort counts against the kernel's ``rseq:rseq_ip_fixup``.

Opt-in: ``--rseq-perf`` (ini ``rseq_perf``), ``PYTEST_RSEQ_PERF=1``, or the
gate's ``perf/ip-fixup`` scenario. Nothing here touches tracefs until the
cross-check is asked for. When it is, and ``perf`` is installed and the
tracepoint can be found, the child runs under
``perf stat -x, -e rseq:rseq_ip_fixup`` and the oracle reports the count and
its difference from the aborts the workload's handlers counted.

The tracepoint is found the way ``perf`` finds it: in the tracefs (or
debugfs) mounts listed in ``/proc/self/mounts``; when none is mounted and we
are root, tracefs is mounted at ``/sys/kernel/tracing``, as ``perf`` itself
does. That mount is left in place (see docs/guide.md). A tracefs we may not
read (it is ``drwx------`` on most hosts) means "not available", with the
reason, never an error.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PERF_EVENT = "rseq:rseq_ip_fixup"
PERF_ENV = "PYTEST_RSEQ_PERF"
MOUNTS = "/proc/self/mounts"
TRACEFS_MOUNT_POINT = Path("/sys/kernel/tracing")
HOW_TO_ASK = f"--rseq-perf, ini rseq_perf or {PERF_ENV}=1 turns it on"

_requested: bool | None = None
"""Set by the plugin (``--rseq-perf``) or the gate; None: the environment variable decides."""


def perf_requested() -> bool:
    """True when the cross-check was asked for (the option, or ``PYTEST_RSEQ_PERF=1``)."""
    if _requested is not None:
        return _requested
    return os.environ.get(PERF_ENV) == "1"


def set_requested(value: bool | None) -> None:
    """Turn the cross-check on or off for this process (None: back to the environment)."""
    global _requested
    _requested = value


@contextlib.contextmanager
def requested(value: bool = True) -> Iterator[None]:
    """Turn the cross-check on (or off) for the block, then restore the previous setting."""
    before = _requested
    set_requested(value)
    try:
        yield
    finally:
        set_requested(before)


def tracefs_roots(mounts: str = MOUNTS) -> list[Path]:
    """The tracing folders of the mounted tracefs and debugfs file systems, as perf finds them."""
    roots: list[Path] = []
    with contextlib.suppress(OSError), open(mounts) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) < 3:
                continue
            if parts[2] == "tracefs":
                roots.append(Path(parts[1]))
            elif parts[2] == "debugfs":
                roots.append(Path(parts[1]) / "tracing")
    return list(dict.fromkeys(roots))


def mount_tracefs(target: Path = TRACEFS_MOUNT_POINT) -> str | None:
    """Mount tracefs at ``target`` (root only); None on success, else why it failed."""
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.mount(b"nodev", os.fsencode(target), b"tracefs", 0, None)
    if rc != 0:
        err = ctypes.get_errno()
        return f"mounting tracefs at {target} failed: {errno.errorcode.get(err, err)}"
    return None


def find_tracepoint(*, mount: bool = False, mounts: str = MOUNTS) -> tuple[bool, str | None]:
    """Whether ``rseq:rseq_ip_fixup`` is visible to us, and why not.

    Args:
        mount: when no tracefs is mounted and we are root, mount it at
            ``/sys/kernel/tracing`` first (what ``perf`` does).
        mounts: the mount table to read.

    Returns:
        ``(True, None)``, or ``(False, reason)``: tracefs not mounted, not
        readable by this uid, or without the tracepoint.
    """
    uid = os.geteuid()
    roots = tracefs_roots(mounts)
    if not roots and mount and uid == 0:
        failed = mount_tracefs()
        if failed:
            return False, failed
        roots = tracefs_roots(mounts)
    if not roots:
        need = "" if uid == 0 else f" (mounting it needs root; uid {uid})"
        return False, f"tracefs is not mounted{need}"
    denied: list[Path] = []
    for root in roots:
        try:
            os.stat(root / "events" / "rseq" / "rseq_ip_fixup")
        except PermissionError:
            denied.append(root)
        except OSError:
            continue
        else:
            return True, None
    if denied:
        return False, f"{denied[0]} is not readable by uid {uid}"
    where = ", ".join(str(r) for r in roots)
    return False, f"no {PERF_EVENT} tracepoint in {where} (a kernel without rseq tracepoints)"


def perf_status() -> dict[str, Any]:
    """Whether the ``rseq:rseq_ip_fixup`` cross-check runs, and why not.

    Checked in this order, so that a run that did not ask looks at nothing:
    asked for, ``perf`` installed, tracepoint found (mounting tracefs as root).
    """
    if not perf_requested():
        return {"available": False, "reason": f"not requested ({HOW_TO_ASK})"}
    if not shutil.which("perf"):
        return {"available": False, "reason": "perf is not installed (Debian: linux-perf)"}
    found, reason = find_tracepoint(mount=True)
    if not found:
        return {"available": False, "reason": reason}
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
