"""The lifecycle perturbations of a run, as one small immutable record."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from .injectors import INJECTORS

LIMITS: dict[str, float] = {
    **{inj.field: inj.limit for inj in INJECTORS},
    "oversubscribe": 64,
    "cs_delay": 1_000_000,
}
"""Upper bounds per field (the injectors' from their registry): past these a value is a
typo, not a stress level."""


@dataclass(frozen=True)
class Chaos:
    """How to perturb the workers while they run. Rates are events per second.

    Args:
        signals_hz: real-time signals aimed at worker threads: half the rate
            by ``tgkill``, half by per-thread POSIX timers (never SIGALRM).
        affinity_hz: ``sched_setaffinity`` changes of worker threads.
        cpuset_hz: ``cpuset.cpus`` rewrites of a cgroup holding the workers.
        churn_hz: worker threads replaced (exit, new thread in the slot).
        fork_hz: children forked from the running process that do ops too.
        membarrier_hz: ``MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ`` fences.
        oversubscribe: default thread count as a multiple of allowed CPUs.
        cs_delay: delay-loop iterations inside the built-in sections, so
            signals and preemption land inside them.
        hotplug_hz: CPU offline/online events (opt-in, root only).

    Raises:
        ValueError: a field is negative, NaN, infinite or absurdly large.
    """

    signals_hz: float = 0
    affinity_hz: float = 0
    cpuset_hz: float = 0
    churn_hz: float = 0
    fork_hz: float = 0
    membarrier_hz: float = 0
    oversubscribe: float = 1.0
    cs_delay: int = 0
    hotplug_hz: float = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"Chaos.{f.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"Chaos.{f.name} must be finite and >= 0, got {value!r}")
            if value > LIMITS[f.name]:
                raise ValueError(f"Chaos.{f.name}={value!r} is above the limit {LIMITS[f.name]:g}")
        if self.oversubscribe == 0:
            raise ValueError("Chaos.oversubscribe must be > 0, got 0")
        if self.cs_delay != int(self.cs_delay):
            raise ValueError(f"Chaos.cs_delay must be a whole number, got {self.cs_delay!r}")

    @classmethod
    def none(cls) -> Chaos:
        """No perturbation: the scheduler's own preemption only."""
        return cls()

    @classmethod
    def default(cls) -> Chaos:
        """A mix that catches ``canary_racy`` on 2 CPUs: oversubscription plus migration.

        Two threads per allowed CPU preempt each other inside unprotected
        read-modify-write windows, affinity flips (500/s) migrate them, signals
        and churn add aborts and fresh registrations. It needs no privilege
        (no cpusets, no hotplug); measured 20/20 catches in 0.3 s runs.
        """
        return cls(signals_hz=2000, affinity_hz=500, churn_hz=200, oversubscribe=2.0)

    @property
    def active(self) -> list[str]:
        """Names of the injectors this record turns on."""
        return [
            f.name for f in fields(self) if f.name.endswith("_hz") and getattr(self, f.name) > 0
        ]

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-safe mapping."""
        return asdict(self)
