"""The outcome of one stress run, and the assertion that checks it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConsistencyError, hide_for_caller_errors


@dataclass
class StressResult:
    """What one run did and whether the rseq path agreed with the oracle.

    ``expected`` is the fallback-path total (the ops the workers completed,
    counted thread-locally, or the workload's ``expected(ops)``); ``observed``
    is the workload's ``total()`` over its per-CPU shards. ``ok`` is true only
    when they are equal, nothing crashed, no invariant broke and every
    requested perturbation showed an effect; ``reasons`` says why not.
    """

    ok: bool
    workload: str
    path: str
    registration: str
    threads: int
    expected: int
    observed: int
    per_cpu: list[int]
    ops: int
    aborts: int
    migrations: int
    signals_delivered: int
    affinity_changes: int
    cpuset_shifts: int
    threads_started: int
    forks: int
    membarriers: int
    invariant_violations: int
    crash: str | None
    seed: int
    duration_s: float
    error: str | None = None
    reasons: list[str] = field(default_factory=list)
    repro: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ops_per_s(self) -> float:
        """Completed ops per second of wall time."""
        return self.ops / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def showed_a_bug(self) -> bool:
        """True when the run itself exposed a bug: lost or invented counts, a crash,
        or a broken invariant. A run that stopped on an error shows nothing."""
        if self.error and not self.crash:
            return False
        return bool(self.crash or self.lost != 0 or self.invariant_violations)

    @property
    def lost(self) -> int:
        """How many counts the rseq path lost (negative: it invented some)."""
        return self.expected - self.observed

    def to_dict(self) -> dict[str, Any]:
        """Return every field as JSON-safe primitives (plus ``ops_per_s``)."""
        data = asdict(self)
        data["ops_per_s"] = self.ops_per_s
        return data

    def describe(self) -> str:
        """Return the full diagnostics as text: verdict, numbers, seed and repro."""
        verdict = "OK" if self.ok else "FAILED"
        lines = [
            f"rseq stress {verdict}: workload={self.workload} path={self.path} "
            f"registration={self.registration} threads={self.threads} seed={self.seed}",
            f"  expected (fallback-path tally) = {self.expected}",
            f"  observed (sum of per-CPU shards) = {self.observed}"
            + (f"  -> lost {self.lost}" if self.lost else ""),
            f"  per_cpu = {self.per_cpu}",
            f"  ops={self.ops} ({self.ops_per_s:,.0f}/s) aborts={self.aborts} "
            f"migrations={self.migrations} signals={self.signals_delivered} "
            f"affinity={self.affinity_changes} cpuset={self.cpuset_shifts} "
            f"threads_started={self.threads_started} forks={self.forks} "
            f"membarriers={self.membarriers} invariant_violations={self.invariant_violations}",
        ]
        if self.crash:
            lines.append(f"  crash: the stressed process died with {self.crash}")
        if self.error:
            lines.append(f"  error: {self.error}")
        lines.extend(f"  reason: {reason}" for reason in self.reasons)
        if self.repro:
            lines.append(f"  repro: {self.repro}")
        return "\n".join(lines)

    def assert_consistent(self) -> None:
        """Raise :class:`ConsistencyError` with full diagnostics unless ``ok``."""
        __tracebackhide__ = hide_for_caller_errors
        if not self.ok:
            raise ConsistencyError(self.describe())
