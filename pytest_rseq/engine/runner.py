"""``run()``: validate the request, run it in a child process, build the result."""

from __future__ import annotations

import contextlib
import math
import os
import random
import threading
from collections.abc import Iterator
from typing import Any

from ..errors import CapabilityMissing, WorkloadError, hide_for_caller_errors
from ..host import cpuset, hotplug, stale
from .chaos import Chaos
from .child_process import run_isolated
from .result import StressResult
from .workload import (
    WorkloadLike,
    as_workload,
    static_tls_hint,
    wants_preload_retry,
    with_preload,
)

PATHS = ("rseq", "fallback", "both")
REGISTRATIONS = ("auto", "glibc", "own", "blocked-enosys", "blocked-eperm")
MAX_THREADS = 1024
MAX_OPS_PER_THREAD = 10**12
MAX_DURATION_S = 3600.0
JOIN_TIMEOUT_S = 5.0
DEFAULT_EVIDENCE_CAP = 10.0
"""A run may go on up to this many times its duration while evidence is missing ..."""
MIN_EVIDENCE_WAIT_S = 1.0
"""... and, by default, at least this long in all (short runs: the scheduler's own
migrations and rare causes need some time)."""
MAX_EVIDENCE_CAP = 1000.0


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    __tracebackhide__ = hide_for_caller_errors
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value!r}")
    return value


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    __tracebackhide__ = hide_for_caller_errors
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return str(value)


def check_evidence_cap(value: Any) -> float:
    """Return ``value`` as an evidence cap (a multiple of the duration, 1 = never extend).

    Raises:
        ValueError: not a finite number between 1 and ``MAX_EVIDENCE_CAP``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"evidence_cap must be a number (a multiple of duration), got {value!r}")
    if not math.isfinite(value) or not 1 <= value <= MAX_EVIDENCE_CAP:
        raise ValueError(f"evidence_cap must be between 1 and {MAX_EVIDENCE_CAP:g}, got {value!r}")
    return float(value)


def allowed_cpus() -> int:
    """Number of CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def build_spec(
    workload: WorkloadLike,
    *,
    threads: int | None,
    ops_per_thread: int | None,
    duration: float,
    chaos: Chaos | None,
    path: str,
    registration: str,
    seed: int | None,
    evidence_cap: float | None = None,
) -> dict[str, Any]:
    """Validate the arguments of :func:`run` and return the child's JSON spec.

    Raises:
        ValueError: any argument is out of range or of the wrong type; the
            message names the argument and the value.
    """
    __tracebackhide__ = hide_for_caller_errors
    wl = as_workload(workload)
    if chaos is None:
        chaos = Chaos.default()
    elif not isinstance(chaos, Chaos):
        raise ValueError(f"chaos must be a Chaos, got {chaos!r}")
    if threads is None:
        threads = max(1, min(MAX_THREADS, round(chaos.oversubscribe * allowed_cpus())))
    _check_int("threads", threads, 1, MAX_THREADS)
    if ops_per_thread is not None:
        _check_int("ops_per_thread", ops_per_thread, 1, MAX_OPS_PER_THREAD)
    if isinstance(duration, bool) or not isinstance(duration, (int, float)):
        raise ValueError(f"duration must be a number of seconds, got {duration!r}")
    if not math.isfinite(duration) or not 0 < duration <= MAX_DURATION_S:
        raise ValueError(f"duration must be > 0 and <= {MAX_DURATION_S:g} s, got {duration!r}")
    if evidence_cap is None:
        longest = max(DEFAULT_EVIDENCE_CAP, MIN_EVIDENCE_WAIT_S / duration)
        evidence_cap = min(MAX_EVIDENCE_CAP, longest)
    cap = check_evidence_cap(evidence_cap)
    _check_choice("path", path, PATHS)
    _check_choice("registration", registration, REGISTRATIONS)
    if seed is None:
        seed = random.SystemRandom().getrandbits(63)
    _check_int("seed", seed, 0, 2**64 - 1)
    return {
        "workload": wl.to_spec(),
        "threads": threads,
        "ops_per_thread": ops_per_thread,
        "duration": float(duration),
        "chaos": chaos.to_dict(),
        "path": path,
        "registration": registration,
        "seed": seed,
        "evidence_cap": cap,
        "join_timeout": JOIN_TIMEOUT_S,
    }


@contextlib.contextmanager
def machine_changes(spec: dict[str, Any]) -> Iterator[list[str]]:
    """Set up the cpuset group and hotplug guard a run asks for; undo them afterwards.

    Adds ``cpuset`` / ``hotplug_cpus`` to ``spec``. Yields a list that holds,
    after the block, what could not be undone (empty when all went well).

    Raises:
        CapabilityMissing: cpusets or hotplug were asked for and are not usable.
    """
    chaos = spec["chaos"]
    problems: list[str] = []
    # Before the checks: a killed run may have left CPU 1 offline.
    if chaos["cpuset_hz"] > 0 or chaos["hotplug_hz"] > 0:
        stale.restore()
    else:
        stale.restore_once()
    with contextlib.ExitStack() as stack:
        if chaos["cpuset_hz"] > 0:
            group = cpuset.create_group(sorted(os.sched_getaffinity(0)))
            spec["cpuset"] = group.to_spec()

            def remove() -> None:
                if not cpuset.remove_group(group.path):
                    problems.append(f"cpuset group {group.path} could not be removed")

            stack.callback(remove)
        if chaos["hotplug_hz"] > 0:
            cpus = hotplug.check(set(os.sched_getaffinity(0)))
            spec["hotplug_cpus"] = stack.enter_context(hotplug.guard(cpus))
            spec["hotplug_state"] = str(hotplug.state_path())
        yield problems


def cleanup_stale() -> dict[str, list[str]]:
    """Undo what killed runs left behind: orphans, cpuset groups and offline CPUs of dead owners."""
    done = stale.restore()
    return {
        "orphans_killed": [str(p) for p in done.orphans],
        "cpuset_groups": [str(p) for p in done.groups],
        "cpus_onlined": [str(c) for c in done.cpus],
    }


def run_in_process(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``spec`` in this process, in a helper thread so Ctrl-C stays responsive."""
    from .._native import load
    from . import driver

    box: dict[str, Any] = {}
    # Cleared here, before the run starts, and never by the native run itself:
    # a stop asked for at any point of the run (both halves of "both") holds.
    load()[1].prseq_clear_stop()

    def target() -> None:
        try:
            box["raw"] = driver.run_spec(spec)
        except BaseException as exc:  # handed to the caller below
            box["exc"] = exc

    worker = threading.Thread(target=target, name="pytest-rseq-run", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.05)
    except BaseException:
        load()[1].prseq_request_stop()
        worker.join()
        raise
    if "exc" in box:
        raise box["exc"]
    return dict(box["raw"])


def _refuse_silent_fallback(spec: dict[str, Any], raw: dict[str, Any]) -> None:
    """Raise CapabilityMissing when rseq was asked for but only the fallback could run.

    A passing result there would claim rseq code was tested when it never ran;
    the blocked modes are exempt (running on the fallback path is their point).
    """
    rseq_run = raw.get("runs", {}).get("rseq")
    if (
        spec["path"] == "fallback"
        or spec["registration"].startswith("blocked-")
        or not rseq_run
        or rseq_run["path"] == "rseq"
        or rseq_run.get("error")
    ):
        return
    abi = raw.get("abi") or {}
    raise CapabilityMissing(
        f"rseq is not usable in the stressed process (area owner {abi.get('owner')}, "
        f"__rseq_size {abi.get('glibc_size')}, rseq syscall errno {abi.get('syscall_errno')}): "
        "only the fallback path could run; use path='fallback' to test it on its own"
    )


def run(
    workload: WorkloadLike,
    *,
    threads: int | None = None,
    ops_per_thread: int | None = None,
    duration: float = 1.0,
    chaos: Chaos | None = None,
    path: str = "rseq",
    registration: str = "auto",
    isolate: bool = True,
    seed: int | None = None,
    evidence_cap: float | None = None,
) -> StressResult:
    """Run ``workload`` in native threads under ``chaos`` and check it against the oracle.

    Args:
        workload: a built-in name (``"counter"``, ``"counter_mm_cid"``,
            ``"canary_*"``) or a :class:`Workload`.
        threads: worker threads; default ``Chaos.oversubscribe`` x allowed CPUs.
        ops_per_thread: op budget per thread; default: run until ``duration``.
        duration: deadline of the run in seconds.
        chaos: the perturbations; default ``Chaos.default()``; ``Chaos.none()``
            for none (the run still needs its evidence, see ``evidence_cap``).
        path: ``"rseq"``, ``"fallback"`` or ``"both"`` (same seed and op budget
            on both paths, compared).
        registration: ``"auto"``, ``"glibc"``, ``"own"``, ``"blocked-enosys"``
            or ``"blocked-eperm"``.
        isolate: run in a child process (default); in-process runs accept
            only ``"auto"`` and ``"glibc"`` registration.
        seed: seeds the chaos schedule; random when None, reported either way.
        evidence_cap: while the evidence a verdict needs (aborts, each requested
            cause, migrations, ...) is missing at ``duration``, the run goes on, up
            to ``evidence_cap`` x ``duration`` in all (default 10, and at least 1 s in
            all; 1 never extends).
            A run that ends without it has the verdict ``"no-evidence"``.

    Returns:
        A :class:`StressResult`; call ``assert_consistent()`` on it.

    Raises:
        ValueError: a bad argument (the message names it).
        CapabilityMissing: the machine cannot do what was asked.
        WorkloadError: a workload library could not be loaded.
    """
    __tracebackhide__ = hide_for_caller_errors
    if not isinstance(isolate, bool):
        raise ValueError(f"isolate must be True or False, got {isolate!r}")
    spec = build_spec(
        workload,
        threads=threads,
        ops_per_thread=ops_per_thread,
        duration=duration,
        chaos=chaos,
        path=path,
        registration=registration,
        seed=seed,
        evidence_cap=evidence_cap,
    )
    if not isolate and registration not in ("auto", "glibc"):
        raise ValueError(
            f"registration={registration!r} needs isolate=True (it changes how the process starts)"
        )
    chaos_cfg = spec["chaos"]
    if not isolate and (chaos_cfg["cpuset_hz"] > 0 or chaos_cfg["hotplug_hz"] > 0):
        raise ValueError(
            "chaos with cpuset_hz or hotplug_hz needs isolate=True (it moves and "
            "offlines CPUs under the stressed process)"
        )
    with machine_changes(spec) as cleanup:
        raw = run_isolated(spec) if isolate else run_in_process(spec)
        if isolate and wants_preload_retry(spec, raw):
            spec = with_preload(spec)
            raw = run_isolated(spec)
    if cleanup:
        raw["cleanup_errors"] = cleanup
    if raw.get("capability_missing"):
        raise CapabilityMissing(raw["capability_missing"])
    if raw.get("workload_error"):
        raise WorkloadError(static_tls_hint(spec, raw["workload_error"]))
    _refuse_silent_fallback(spec, raw)
    from .oracle import build_result

    return build_result(spec, raw)
