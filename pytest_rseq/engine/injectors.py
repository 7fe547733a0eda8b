"""The one injector registry: each lifecycle perturbation, its limit, its counter, its evidence.

Read by :class:`~pytest_rseq.Chaos` (field bounds), the oracle (which
evidence item an injector asks for), the gate (the injector scenarios and
what proves each one had an effect), the benchmarks and the docs' injector
table test. Adding an injector: a ``Chaos`` field, an entry here, and its C
(the native injector, its ``struct prseq_config`` rate and ``struct
prseq_result`` counter).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Injector:
    """One injector.

    Args:
        name: short name (``signals``); the ``Chaos`` field is ``<name>_hz``.
        counter: the result counter that counts its effect.
        limit: the highest rate ``Chaos`` accepts (past it a value is a typo).
        evidence: the ``PRSEQ_EVIDENCE_*`` item (lower case) a run with this
            injector on must show, or None when it asks for none of its own.
        proof: the result counters the gate needs above 0 to call its
            scenario evidence (the counter first).
        probe_hz: the rate the gate's scenario runs it at.
        cs_delay: the ``cs_delay`` the gate's scenario adds (aborts need wide sections).
        root_only: it needs root (without it the gate says ``NOT TESTED``).
        opt_in: it takes CPUs offline: off unless asked for.
        baseline_threads: the counter starts at the thread count (each slot's
            first thread is no replacement): the effect is counter - threads.
        help: one line saying what it does.
    """

    name: str
    counter: str
    limit: float
    evidence: str | None
    proof: tuple[str, ...]
    probe_hz: float
    help: str
    cs_delay: int = 0
    root_only: bool = False
    opt_in: bool = False
    baseline_threads: bool = False

    @property
    def field(self) -> str:
        """The ``Chaos`` field that sets its rate."""
        return f"{self.name}_hz"

    def effect(self, counters: Mapping[str, int], threads: int) -> int:
        """How many events of this injector a run's counters show."""
        count = int(counters.get(self.counter, 0))
        return count - threads if self.baseline_threads else count


INJECTORS: tuple[Injector, ...] = (
    Injector(
        "signals",
        counter="signals_delivered",
        limit=1_000_000,
        evidence="signal",
        proof=("signals_delivered", "aborts"),
        probe_hz=5000,
        cs_delay=64,
        help="real-time signals delivered to workers (half tgkill, half per-thread timers)",
    ),
    Injector(
        "affinity",
        counter="affinity_changes",
        limit=100_000,
        evidence="migration",
        proof=("affinity_changes", "migrations"),
        probe_hz=1000,
        help="sched_setaffinity changes of worker threads",
    ),
    Injector(
        "cpuset",
        counter="cpuset_shifts",
        limit=20_000,
        evidence="migration",
        proof=("cpuset_shifts",),
        probe_hz=500,
        root_only=True,
        help="cpuset.cpus rewrites of a cgroup holding the workers",
    ),
    Injector(
        "churn",
        counter="threads_started",
        limit=100_000,
        evidence="churn",
        proof=("threads_started",),
        probe_hz=500,
        baseline_threads=True,
        help="worker threads replaced (exit, a new thread in the slot)",
    ),
    Injector(
        "fork",
        counter="forks",
        limit=10_000,
        evidence="fork",
        proof=("forks",),
        probe_hz=50,
        help="children forked from the running process that do ops too",
    ),
    Injector(
        "membarrier",
        counter="membarriers",
        limit=1_000_000,
        evidence="membarrier",
        proof=("membarriers", "aborts"),
        probe_hz=5000,
        cs_delay=64,
        help="MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ fences",
    ),
    Injector(
        "hotplug",
        counter="hotplug_events",
        limit=10,
        evidence="hotplug",
        proof=("hotplug_events",),
        probe_hz=2,
        root_only=True,
        opt_in=True,
        help="CPU offline/online events (never CPU 0)",
    ),
)

BY_FIELD: dict[str, Injector] = {inj.field: inj for inj in INJECTORS}
"""The injectors by their ``Chaos`` field."""
