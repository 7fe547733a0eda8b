"""The outcome of one stress run, and the assertion that checks it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import ConsistencyError, hide_for_caller_errors
from .counters import Counters

VERDICTS = ("ok", "bug", "no-evidence", "error")
HEADLINES = {"ok": "OK", "bug": "BUG", "no-evidence": "NO EVIDENCE", "error": "ERROR"}


@dataclass
class StressResult:
    """What one run did and whether the rseq path agreed with the oracle.

    ``expected`` is the fallback-path total (the ops the workers completed,
    counted thread-locally, or the workload's ``expected(ops)``); ``observed``
    is the workload's ``total()`` over its per-CPU shards.

    ``verdict`` is one of:

    * ``"ok"``: they are equal, nothing crashed, no invariant broke, and the
      run showed its evidence (sections aborted, by each requested cause,
      workers migrated, ...: see the guide's "Verdicts");
    * ``"bug"``: lost or invented counts, a crash of the stressed code, a
      broken invariant, a failed fork child;
    * ``"no-evidence"``: nothing wrong was seen, but the evidence was missing
      (``reasons`` says what, and what to change); not a bug, and not a pass;
    * ``"error"``: the run stopped on an error that shows no bug.

    ``ok`` is ``verdict == "ok"``. ``aborts_by_cause`` splits ``aborts`` into
    ``signal``, ``membarrier`` (upper bounds) and ``preemption`` (the rest);
    ``extended_s`` is how long the run went on past its duration for evidence.
    ``counters`` holds every counter of the C result struct (the integer
    attributes above are the same numbers; ``details`` has the others too).
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
    verdict: str = ""
    aborts_by_cause: dict[str, int] = field(default_factory=dict)
    extended_s: float = 0.0
    reasons: list[str] = field(default_factory=list)
    repro: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        if not self.verdict:  # built by hand (tests, old callers): infer it
            self.verdict = self._inferred_verdict()
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, got {self.verdict!r}")
        if self.ok != (self.verdict == "ok"):
            raise ValueError(f"ok={self.ok!r} contradicts verdict={self.verdict!r}")
        if not self.counters:  # built by hand: the counters it was given
            self.counters = Counters({n: getattr(self, n) for n in COUNTER_ATTRIBUTES})
        if not self.aborts_by_cause:
            self.aborts_by_cause = {"signal": 0, "membarrier": 0, "preemption": self.aborts}

    def _inferred_verdict(self) -> str:
        if self.ok:
            return "ok"
        if self.crash or (not self.error and (self.lost or self.invariant_violations)):
            return "bug"
        return "error" if self.error else "no-evidence"

    @property
    def ops_per_s(self) -> float:
        """Completed ops per second of wall time."""
        return self.ops / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def showed_a_bug(self) -> bool:
        """True when the run itself exposed a bug (``verdict == "bug"``): lost or
        invented counts, a crash, a broken invariant, a failed fork child."""
        return self.verdict == "bug"

    @property
    def lost(self) -> int:
        """How many counts the rseq path lost (negative: it invented some)."""
        return self.expected - self.observed

    def to_dict(self) -> dict[str, Any]:
        """Return every field as JSON-safe primitives (plus ``ops_per_s``)."""
        data = asdict(self)
        data["counters"] = dict(self.counters)  # a plain dict (execnet sends no subclass)
        data["ops_per_s"] = self.ops_per_s
        return data

    def describe(self) -> str:
        """Return the full diagnostics as text: verdict, numbers, seed and repro."""
        causes = ", ".join(f"{k} {v}" for k, v in self.aborts_by_cause.items())
        lines = [
            f"rseq stress {HEADLINES[self.verdict]}: workload={self.workload} path={self.path} "
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
            f"  aborts by cause: {causes} (signal and membarrier: upper bounds)",
        ]
        if self.extended_s > 0:
            lines.append(f"  extended {self.extended_s:.2f} s past the duration for evidence")
        if self.crash:
            lines.append(f"  crash: the stressed process died with {self.crash}")
        if self.error:
            lines.append(f"  error: {self.error}")
        lines.extend(f"  reason: {reason}" for reason in self.reasons)
        if self.repro:
            lines.append(f"  repro: {self.repro}")
        return "\n".join(lines)

    def assert_consistent(self) -> None:
        """Raise :class:`ConsistencyError` with full diagnostics unless ``ok``
        (a ``no-evidence`` run fails too: nothing was proven)."""
        __tracebackhide__ = hide_for_caller_errors
        if not self.ok:
            raise ConsistencyError(self.describe())


COUNTER_ATTRIBUTES: tuple[str, ...] = tuple(
    f.name for f in fields(StressResult) if f.type == "int" and f.name not in ("threads", "seed")
)
"""The counters :class:`StressResult` also has as attributes (its integer fields)."""
