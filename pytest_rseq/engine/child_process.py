"""Low-level: the stress child as a process: start it, feed it, read it, kill its group.

Every run with ``isolate=True`` happens in ``python -m pytest_rseq.engine.driver``,
started in a new session so the whole process group (fork-churn children
included) can be killed on a timeout, a Ctrl-C or after a crash. The spec goes
in and stderr comes back through files, and the result is read from its file
when the child has exited: a process the workload started that outlives the
child holds no pipe the parent waits on. The child carries its owner's tag
(``stale.OWNER_ENV``) and dies, undoing its changes, when the owner dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import site
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from ..host import perf, stale
from ..host.prep import HostPrep
from .deadlines import deadlines
from .spec import ChildOrder, RunSpec
from .workload import preload_env

PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


def child_env(registration: str) -> dict[str, str]:
    """The stress child's environment: ours, tagged with its owner (this process)."""
    env = dict(os.environ)
    env[stale.OWNER_ENV] = stale.owner_tag()
    if PACKAGE_PARENT not in site.getsitepackages():
        # A source checkout or a path tweak made us importable: make the child
        # find the same package (an installed one it finds by itself, and
        # putting site-packages first would shadow the standard library).
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
    if registration == "own":
        tunables = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]
        tunables = [t for t in tunables if not t.startswith("glibc.pthread.rseq=")]
        env["GLIBC_TUNABLES"] = ":".join([*tunables, "glibc.pthread.rseq=0"])
    return env


def child_argv(registration: str) -> list[str]:
    argv = [sys.executable, "-m", "pytest_rseq.engine.driver"]
    if registration.startswith("blocked-"):
        argv += ["--block", registration.split("-", 1)[1].upper()]
    return argv


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_isolated(spec: RunSpec, host: HostPrep) -> dict[str, Any]:
    """Run ``spec`` in a fresh child process (its own session) and return the raw result.

    A crash of the child comes back as ``{"crash": "SIGSEGV", ...}``; the
    child's process group is killed on timeout or when the caller is
    interrupted (Ctrl-C, pytest-timeout).
    """
    limit = deadlines(spec).child
    with tempfile.TemporaryDirectory(prefix="pytest-rseq-") as tmp:
        order = ChildOrder(spec, host, result_path=os.path.join(tmp, "result.json"))
        spec_path = os.path.join(tmp, "spec.json")
        with open(spec_path, "w") as fh:
            json.dump(order.to_json(), fh)
        perf_prefix, perf_out = perf.perf_wrapper(tmp)
        # Files, not pipes: a process the workload started may outlive the
        # child and hold its output open; the run is over when the child exits.
        with open(spec_path, "rb") as stdin, open(os.path.join(tmp, "stderr"), "w+b") as errf:
            proc = subprocess.Popen(
                perf_prefix + child_argv(spec.registration),
                stdin=stdin,
                stdout=subprocess.DEVNULL,
                stderr=errf,
                env=preload_env(child_env(spec.registration), spec.workload),
                start_new_session=True,
            )
            try:
                proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                return {
                    "error": f"the child did not finish within {limit:.0f} s and was killed",
                    "crash": "timeout",
                    "runs": {},
                    "stderr": _tail(errf, 4000),
                }
            except BaseException:
                kill_group(proc)
                raise
            finally:
                reap_group(proc.pid)
            stderr = _tail(errf, 4000)
        try:
            with open(order.result_path) as fh:
                raw: dict[str, Any] = json.load(fh)
        except (OSError, ValueError):
            raw = {"runs": {}}
        raw["perf"] = perf.read_perf(perf_out)
    raw["stderr"] = stderr
    raw["returncode"] = proc.returncode
    if proc.returncode < 0:
        raw["crash"] = signal_name(-proc.returncode)
    elif raw["perf"].get("available") and not raw["runs"] and perf.perf_crash(stderr):
        raw["crash"] = perf.perf_crash(stderr)
    elif proc.returncode != 0 and not raw["runs"]:
        raw["error"] = f"the child exited with status {proc.returncode}: {stderr.strip()[-500:]}"
    return raw


def _tail(fh: BinaryIO, limit: int) -> str:
    """The last ``limit`` bytes written to ``fh``, decoded."""
    fh.seek(0, os.SEEK_END)
    fh.seek(max(0, fh.tell() - limit))
    return fh.read().decode(errors="replace")


def reap_group(pgid: int) -> None:
    """Kill what the child left in its process group (fork-churn grandchildren)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def signal_name(number: int) -> str:
    """``SIGSEGV`` for 11; real-time signals as ``SIGRTMIN+n`` (Python names only two)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
            return f"SIGRTMIN+{number - signal.SIGRTMIN}"
        return f"signal {number}"
