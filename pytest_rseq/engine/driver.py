"""The driver: one run of a :class:`RunSpec` in this process, through the native core.

``run_spec`` makes the ``prseq_run`` calls (both halves of ``path="both"``)
and returns the raw result; ``runner.run_in_process`` calls it in a thread,
and as a module it is the stress child: ``child_process.py`` starts
``python -m pytest_rseq.engine.driver`` in a new session, gives it a
:class:`ChildOrder` as JSON on its stdin, and reads the result from the file
the order names once this process has exited. A crash of the
workload only kills this process. When the process that started it dies,
this process undoes its changes and exits (``host/parent_watch.py``).
``--block ENOSYS|EPERM`` installs a seccomp filter that makes the rseq
syscall fail and re-executes the child, so glibc starts without rseq, exactly
as under a container profile that blocks it.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from typing import Any

from .._native import load
from ..host.abi import OWNERS, probe_abi
from ..host.prep import HostPrep
from .counters import counter_names
from .deadlines import FALLBACK_ATTEMPTS, deadlines, fallback_deadline
from .injectors import INJECTORS
from .spec import ChildOrder, RunSpec
from .workload import Workload

MM_CID_WORKLOADS = ("counter_mm_cid", "canary_clobber_mm_cid")
PATHS = {0: "rseq", 1: "fallback"}
BLOCK_ERRNOS = {"ENOSYS": errno.ENOSYS, "EPERM": errno.EPERM}


def _result_dict(ffi: Any, res: Any) -> dict[str, Any]:
    data: dict[str, Any] = {name: int(getattr(res, name)) for name in counter_names()}
    data["error"] = ffi.string(res.errmsg).decode(errors="replace") if res.error else None
    data["errno"] = int(res.error)
    data["path"] = PATHS.get(int(res.path), "fallback")
    data["owner"] = OWNERS.get(int(res.owner), "none")
    data["duration_s"] = float(res.duration_s)
    data["extended_s"] = float(res.extended_s)
    data["stalled_s"] = float(res.stalled_s)
    data["slot_ops"] = [int(v) for v in res.slot_ops[0 : res.threads]]
    data["per_cpu"] = [int(v) for v in res.shards[0 : res.nr_shards]]
    data["first_violation"] = [int(v) for v in res.first_violation]
    data["cpuset_last"] = ffi.string(res.cpuset_last).decode(errors="replace")
    return data


def _resolve_workload(ffi: Any, lib: Any, wl: Workload) -> Any:
    if wl.library:
        err = ffi.new("char[]", 512)
        ptr = lib.prseq_load_library(wl.library.encode(), wl.symbol.encode(), err, 512)
        if ptr == ffi.NULL:
            raise LookupError(ffi.string(err).decode(errors="replace"))
        return ptr
    ptr = lib.prseq_builtin(wl.name.encode())
    if ptr == ffi.NULL:
        raise LookupError(f"no built-in workload {wl.name!r} in the native core")
    return ptr


def _config(ffi: Any, spec: RunSpec, host: HostPrep, keep: list[Any]) -> Any:
    chaos = spec.chaos
    cfg = ffi.new("struct prseq_config *")
    cfg.threads = spec.threads
    cfg.ops_per_thread = spec.ops_per_thread or 0
    cfg.duration_s = spec.duration
    cfg.evidence_cap_s = deadlines(spec).first_half
    cfg.join_timeout_s = spec.join_timeout
    cfg.own_registration = 1 if spec.registration == "own" else 0
    cfg.workload_registers = 1 if spec.workload.registers_itself else 0
    cfg.seed = spec.seed
    cfg.cs_delay = int(chaos.cs_delay)
    cfg.sample_every = spec.sample_every
    for inj in INJECTORS:  # each rate goes to the struct prseq_config field of its name
        setattr(cfg, inj.field, float(getattr(chaos, inj.field)))
    # The storm's rate is split between tgkill and per-thread timers.
    cfg.signals_hz = float(chaos.signals_hz) / 2
    cfg.timer_hz = float(chaos.signals_hz) / 2
    if spec.aim:
        addrs = ffi.new("uint64_t[]", list(spec.aim))
        keep.append(addrs)
        cfg.aim_addrs = addrs
        cfg.nr_aim = len(spec.aim)
    cpuset = host.cpuset or {}
    texts = {
        "cpuset_dir": cpuset.get("dir"),
        "cpuset_tasks": cpuset.get("tasks"),
        "cpuset_choices": cpuset.get("choices"),
        "hotplug_cpus": ",".join(str(c) for c in host.hotplug_cpus),
        "hotplug_root": host.hotplug_root,
        "node_root": host.node_root,
    }
    for field, value in texts.items():
        if value:
            text = ffi.new("char[]", str(value).encode())
            keep.append(text)
            setattr(cfg, field, text)
    keep.append(cfg)
    return cfg


def _capability_missing(spec: RunSpec, abi: dict[str, Any]) -> str | None:
    """Why this process cannot run ``spec`` as asked (None: it can)."""
    if spec.registration == "glibc" and abi["owner"] != "glibc":
        return (
            f"glibc does not own the rseq area here "
            f"(__rseq_size={abi['glibc_size']}, "
            f"cpu_id={abi['glibc_cpu_id']})"
        )
    if spec.registration == "own" and not abi["available"]:
        return f"the rseq syscall is unavailable ({errno.errorcode.get(abi['syscall_errno'], '?')})"
    uses_mm_cid = spec.workload.name in MM_CID_WORKLOADS and not spec.workload.library
    if uses_mm_cid and spec.path != "fallback" and abi["available"] and not abi["mm_cid_usable"]:
        # Before Linux 6.3 mm_cid stays 0: every thread would share shard 0.
        return (
            f"mm_cid is not provided here (AT_RSEQ_FEATURE_SIZE={abi['feature_size']}, "
            "Linux >= 6.3 needed)"
        )
    return None


def run_spec(spec: RunSpec, host: HostPrep | None = None) -> dict[str, Any]:
    """Run the spec in this process and return the raw result mapping."""
    host = host or HostPrep()
    ffi, lib = load()
    out: dict[str, Any] = {"abi": probe_abi(), "runs": {}}
    missing = _capability_missing(spec, out["abi"])
    if missing:
        out["capability_missing"] = missing
        return out
    try:
        workload = _resolve_workload(ffi, lib, spec.workload)
    except LookupError as exc:
        out["workload_error"] = str(exc)
        return out

    if host.cpuset:
        from ..host.cpuset import join_process

        join_process(dict(host.cpuset))
    keep: list[Any] = []
    cfg = _config(ffi, spec, host, keep)
    res = ffi.new("struct prseq_result *")
    cfg.path = lib.PRSEQ_PATH_FALLBACK if spec.path == "fallback" else lib.PRSEQ_PATH_RSEQ
    lib.prseq_run(workload, cfg, res)
    first = _result_dict(ffi, res)
    out["runs"]["fallback" if spec.path == "fallback" else "rseq"] = first
    if lib.prseq_stop_requested():
        # Stopped (Ctrl-C in an in-process run): the second half of "both" must
        # not start; the flag is cleared only by the caller before a whole run.
        out["stopped"] = True
    elif spec.path == "both" and not first["error"]:
        _fallback_half(workload, cfg, res, first, out)
    return out


def _fallback_half(
    workload: Any, cfg: Any, res: Any, first: dict[str, Any], out: dict[str, Any]
) -> None:
    """The fallback half of "both": same seed, same chaos, and exactly the ops each
    slot did on the rseq path; a clean half without evidence is run again."""
    ffi, lib = load()
    budgets = ffi.new("uint64_t[]", first["slot_ops"])
    cfg.slot_budgets = budgets
    cfg.ops_per_thread = 0
    # A deadline for hangs only, measured from the rseq half's real length
    # (evidence may have extended it): see deadlines.fallback_deadline.
    cfg.duration_s = fallback_deadline(first["duration_s"])
    # The budgets end this half; its evidence (concurrency) is judged, never waited for.
    cfg.evidence_cap_s = 0
    cfg.path = lib.PRSEQ_PATH_FALLBACK
    for attempt in range(1, FALLBACK_ATTEMPTS + 1):
        lib.prseq_run(workload, cfg, res)
        second = _result_dict(ffi, res)
        out["runs"]["fallback"] = second
        out["fallback_attempts"] = attempt
        if not _only_evidence_missing(second) or lib.prseq_stop_requested():
            break


def _only_evidence_missing(run: dict[str, Any]) -> bool:
    """The run was clean (no error, exact totals, no broken invariant) but lacks evidence."""
    return bool(
        run["evidence_missing"]
        and not run["error"]
        and run["observed"] == run["expected"]
        and not run["invariant_violations"]
        and not run.get("fork_errors")
    )


def _main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--block" and argv[1] in BLOCK_ERRNOS:
        _, lib = load()
        rc = lib.prseq_block_rseq(BLOCK_ERRNOS[argv[1]])
        if rc < 0:
            sys.stderr.write(
                f"pytest-rseq: installing the seccomp filter failed: {os.strerror(-rc)}\n"
            )
            return 3
        os.execv(sys.executable, [sys.executable, "-m", "pytest_rseq.engine.driver"])
    order = ChildOrder.from_json(json.loads(sys.stdin.read()))
    from ..host.parent_watch import watch_owner

    watch = watch_owner(order.host)
    out = run_spec(order.spec, order.host)
    if watch is not None:
        watch.run_returned()  # does not return when the owner died meanwhile
    text = json.dumps(out, allow_nan=False)
    with open(order.result_path, "w") as fh:
        fh.write(text)
    sys.stdout.flush()
    # Skip interpreter teardown: a workload's threads or handlers may linger.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
