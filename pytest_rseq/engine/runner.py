"""``run()``: validate the request (a :class:`RunSpec`), prepare the host, run it, judge it."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from ..errors import CapabilityMissing, WorkloadError, hide_for_caller_errors
from ..host import stale
from ..host.prep import HostPrep, prepare
from .chaos import Chaos
from .child_process import run_isolated
from .result import StressResult
from .spec import RunSpec
from .workload import (
    WorkloadLike,
    static_tls_hint,
    wants_preload_retry,
)


def cleanup_stale() -> dict[str, list[str]]:
    """Undo what killed runs left behind: orphans, cpuset groups and offline CPUs of dead owners."""
    done = stale.restore()
    return {
        "orphans_killed": [str(p) for p in done.orphans],
        "cpuset_groups": [str(p) for p in done.groups],
        "cpus_onlined": [str(c) for c in done.cpus],
    }


def run_in_process(spec: RunSpec, host: HostPrep | None = None) -> dict[str, Any]:
    """Run ``spec`` in this process, in a helper thread so Ctrl-C stays responsive."""
    from .._native import load
    from . import driver

    box: dict[str, Any] = {}
    # Cleared here, before the run starts, and never by the native run itself:
    # a stop asked for at any point of the run (both halves of "both") holds.
    load()[1].prseq_clear_stop()

    def target() -> None:
        try:
            box["raw"] = driver.run_spec(spec, host or HostPrep())
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


def _refuse_silent_fallback(spec: RunSpec, raw: dict[str, Any]) -> None:
    """Raise CapabilityMissing when rseq was asked for but only the fallback could run.

    A passing result there would claim rseq code was tested when it never ran;
    the blocked modes are exempt (running on the fallback path is their point).
    """
    rseq_run = raw.get("runs", {}).get("rseq")
    if (
        spec.path == "fallback"
        or spec.registration.startswith("blocked-")
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
    spec = RunSpec.build(
        workload,
        threads=threads,
        ops_per_thread=ops_per_thread,
        duration=duration,
        chaos=chaos,
        path=path,
        registration=registration,
        isolate=isolate,
        seed=seed,
        evidence_cap=evidence_cap,
    )
    return run_spec(spec)


def run_spec(spec: RunSpec) -> StressResult:
    """Run a validated :class:`RunSpec` (what :func:`run` does after building it).

    Raises:
        CapabilityMissing: the machine cannot do what was asked.
        WorkloadError: a workload library could not be loaded.
    """
    __tracebackhide__ = hide_for_caller_errors
    with prepare(cpusets=spec.chaos.cpuset_hz > 0, hotplug_cpus=spec.chaos.hotplug_hz > 0) as (
        host,
        cleanup,
    ):
        raw = run_isolated(spec, host) if spec.isolate else run_in_process(spec, host)
        if spec.isolate and wants_preload_retry(spec.workload, raw):
            spec = replace(spec, workload=replace(spec.workload, preload=True))
            raw = run_isolated(spec, host)
    if cleanup:
        raw["cleanup_errors"] = cleanup
    if raw.get("capability_missing"):
        raise CapabilityMissing(raw["capability_missing"])
    if raw.get("workload_error"):
        raise WorkloadError(static_tls_hint(spec.workload, raw["workload_error"]))
    _refuse_silent_fallback(spec, raw)
    from .oracle import build_result

    return build_result(spec, host, raw)
