"""The run spec: one frozen, typed request for a stress run.

:class:`RunSpec` owns the defaults, the bounds and the validation of every
``run()`` keyword, the merging of the layers the plugin gives (options, then
the marker, then the call) and its JSON form (what the child process reads);
the time limits a spec implies are in :mod:`pytest_rseq.engine.deadlines`.
Nobody adds keys: a changed request is a ``dataclasses.replace`` of a spec,
which validates again.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import hide_for_caller_errors
from ..host.prep import HostPrep
from .chaos import Chaos
from .workload import Workload, WorkloadLike, as_workload

PATHS = ("rseq", "fallback", "both")
REGISTRATIONS = ("auto", "glibc", "own", "blocked-enosys", "blocked-eperm")
IN_PROCESS_REGISTRATIONS = ("auto", "glibc")
"""Registration modes a run with ``isolate=False`` may use (the others change how the
process starts)."""
DEFAULT_WORKLOAD = "counter"
"""The workload of an ``rseq_stress()`` call that names none."""
DEFAULT_DURATION_S = 1.0
MAX_THREADS = 1024
MAX_OPS_PER_THREAD = 10**12
MAX_DURATION_S = 3600.0
SEED_MAX = 2**64 - 1
"""Seeds are unsigned 64-bit numbers (the native core's ``uint64_t seed``)."""
RANDOM_SEED_BITS = 63
"""Drawn seeds have 63 bits, so they print as plain positive integers."""
JOIN_TIMEOUT_S = 5.0
SAMPLE_EVERY = 64
"""A worker samples the rseq-area invariants once every this many ops."""
MAX_AIM = 4
"""Aim addresses a run may have: hardware breakpoints per thread (x86_64 has 4)."""
DEFAULT_EVIDENCE_CAP = 10.0
"""A run may go on up to this many times its duration while evidence is missing ..."""
MIN_EVIDENCE_WAIT_S = 1.0
"""... and, by default, at least this long in all (short runs: the scheduler's own
migrations and rare causes need some time)."""
MAX_EVIDENCE_CAP = 1000.0


def random_seed() -> int:
    """A fresh random seed (the one place seeds are drawn)."""
    return random.SystemRandom().getrandbits(RANDOM_SEED_BITS)


def allowed_cpus() -> int:
    """Number of CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


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


def check_duration(value: Any) -> float:
    """Return ``value`` as a duration in seconds.

    Raises:
        ValueError: not a finite number in (0, ``MAX_DURATION_S``].
    """
    __tracebackhide__ = hide_for_caller_errors
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"duration must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or not 0 < value <= MAX_DURATION_S:
        raise ValueError(f"duration must be > 0 and <= {MAX_DURATION_S:g} s, got {value!r}")
    return float(value)


def check_evidence_cap(value: Any) -> float:
    """Return ``value`` as an evidence cap (a multiple of the duration, 1 = never extend).

    Raises:
        ValueError: not a finite number between 1 and ``MAX_EVIDENCE_CAP``.
    """
    __tracebackhide__ = hide_for_caller_errors
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"evidence_cap must be a number (a multiple of duration), got {value!r}")
    if not math.isfinite(value) or not 1 <= value <= MAX_EVIDENCE_CAP:
        raise ValueError(f"evidence_cap must be between 1 and {MAX_EVIDENCE_CAP:g}, got {value!r}")
    return float(value)


def check_threads(value: Any) -> int:
    """Return ``value`` as a thread count (1 to ``MAX_THREADS``)."""
    __tracebackhide__ = hide_for_caller_errors
    return _check_int("threads", value, 1, MAX_THREADS)


def check_seed(value: Any) -> int:
    """Return ``value`` as a seed (0 to ``SEED_MAX``)."""
    __tracebackhide__ = hide_for_caller_errors
    return _check_int("seed", value, 0, SEED_MAX)


def _validated(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (the fields of a :class:`RunSpec`) checked, numbers normalized.

    Raises:
        ValueError: a value is out of range or of the wrong type (the message names it).
    """
    __tracebackhide__ = hide_for_caller_errors
    out = dict(values)
    if not isinstance(out["isolate"], bool):
        raise ValueError(f"isolate must be True or False, got {out['isolate']!r}")
    if not isinstance(out["workload"], Workload):
        raise ValueError(f"workload must be a Workload, got {out['workload']!r}")
    if not isinstance(out["chaos"], Chaos):
        raise ValueError(f"chaos must be a Chaos, got {out['chaos']!r}")
    check_threads(out["threads"])
    if out["ops_per_thread"] is not None:
        _check_int("ops_per_thread", out["ops_per_thread"], 1, MAX_OPS_PER_THREAD)
    out["duration"] = check_duration(out["duration"])
    if out["evidence_cap"] is not None:
        out["evidence_cap"] = check_evidence_cap(out["evidence_cap"])
    _check_choice("path", out["path"], PATHS)
    _check_choice("registration", out["registration"], REGISTRATIONS)
    check_seed(out["seed"])
    out["aim"] = _check_aim(out.get("aim", ()), out["workload"])
    if not out["isolate"]:
        _check_in_process(out["registration"], out["chaos"])
    return out


def _check_aim(value: Any, workload: Workload) -> tuple[int, ...]:
    """``value`` as aim addresses: at most ``MAX_AIM`` addresses in a library workload."""
    __tracebackhide__ = hide_for_caller_errors
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise ValueError(f"aim must be a tuple of addresses, got {value!r}")
    if value and not workload.library:
        raise ValueError(f"aim needs a library workload (addresses in it), got {workload.name!r}")
    if len(value) > MAX_AIM:
        raise ValueError(f"aim takes at most {MAX_AIM} addresses, got {len(value)}")
    return tuple(_check_int("aim address", a, 1, 2**64 - 1) for a in value)


def _check_in_process(registration: str, chaos: Chaos) -> None:
    __tracebackhide__ = hide_for_caller_errors
    if registration not in IN_PROCESS_REGISTRATIONS:
        raise ValueError(
            f"registration={registration!r} needs isolate=True (it changes how the process starts)"
        )
    if chaos.cpuset_hz > 0 or chaos.hotplug_hz > 0:
        raise ValueError(
            "chaos with cpuset_hz or hotplug_hz needs isolate=True (it moves and "
            "offlines CPUs under the stressed process)"
        )


@dataclass(frozen=True)
class RunSpec:
    """One stress run, validated: what ``run()`` was asked for, with every default resolved.

    Build one with :meth:`build` (``run()``'s keywords, defaults filled in) or
    :meth:`from_layers` (the plugin's option, marker and call layers). The
    fields are ``run()``'s keywords plus the native core's knobs nobody sets
    (``join_timeout``, ``sample_every``) and ``aim``, which only the mutant
    runner sets (``elf/mutation.py``): addresses in the workload's library
    where every worker gets a hardware breakpoint that perturbs it there
    (``native/aim.h``). ``evidence_cap`` None means the default for the
    duration (:attr:`resolved_evidence_cap`).

    Raises:
        ValueError: a field is out of range or of the wrong type; the message
            names it and the value.
    """

    workload: Workload
    threads: int
    duration: float
    chaos: Chaos
    seed: int
    ops_per_thread: int | None = None
    path: str = "rseq"
    registration: str = "auto"
    isolate: bool = True
    evidence_cap: float | None = None
    join_timeout: float = JOIN_TIMEOUT_S
    sample_every: int = SAMPLE_EVERY
    aim: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        __tracebackhide__ = hide_for_caller_errors
        for name, value in _validated(self.__dict__).items():
            object.__setattr__(self, name, value)

    @classmethod
    def build(
        cls,
        workload: WorkloadLike,
        *,
        threads: int | None = None,
        ops_per_thread: int | None = None,
        duration: float = DEFAULT_DURATION_S,
        chaos: Chaos | None = None,
        path: str = "rseq",
        registration: str = "auto",
        isolate: bool = True,
        seed: int | None = None,
        evidence_cap: float | None = None,
    ) -> RunSpec:
        """Return the spec for ``run()``'s keywords: defaults resolved, then validated.

        ``chaos`` None is ``Chaos.default()``; ``threads`` None is
        ``chaos.oversubscribe`` x allowed CPUs; ``seed`` None a random seed.
        """
        __tracebackhide__ = hide_for_caller_errors
        if chaos is None:
            chaos = Chaos.default()
        elif not isinstance(chaos, Chaos):
            raise ValueError(f"chaos must be a Chaos, got {chaos!r}")
        if threads is None:
            threads = max(1, min(MAX_THREADS, round(chaos.oversubscribe * allowed_cpus())))
        values = {
            "workload": as_workload(workload),
            "threads": threads,
            "ops_per_thread": ops_per_thread,
            "duration": duration,
            "chaos": chaos,
            "path": path,
            "registration": registration,
            "isolate": isolate,
            "seed": random_seed() if seed is None else seed,
            "evidence_cap": evidence_cap,
        }
        # Checked here as well as in __post_init__: an error then points at the
        # caller's line, not at the dataclass's generated __init__.
        return cls(**_validated(values))

    @classmethod
    def from_layers(cls, *layers: Mapping[str, Any], default_seed: int | None = None) -> RunSpec:
        """Merge ``run()`` keyword layers, weakest first, and build the spec.

        A later layer's key wins, None included (None asks for the default);
        ``default_seed`` is used when the merged seed is None (else a random one).

        Raises:
            TypeError: a layer has a key that is not a ``run()`` keyword.
        """
        __tracebackhide__ = hide_for_caller_errors
        merged: dict[str, Any] = {}
        for layer in layers:
            unknown = sorted(set(layer) - set(RUN_KEYWORDS))
            if unknown:
                raise TypeError(f"unexpected run() keyword(s) {', '.join(unknown)}")
            merged.update(layer)
        if merged.get("seed") is None:
            merged["seed"] = default_seed
        return cls.build(merged.pop("workload", DEFAULT_WORKLOAD), **merged)

    @property
    def resolved_evidence_cap(self) -> float:
        """The evidence cap in use: the given one, or 10 and at least 1 s in all."""
        if self.evidence_cap is not None:
            return self.evidence_cap
        return min(MAX_EVIDENCE_CAP, max(DEFAULT_EVIDENCE_CAP, MIN_EVIDENCE_WAIT_S / self.duration))

    def to_json(self) -> dict[str, Any]:
        """The JSON-safe form (what the child process reads back with :meth:`from_json`)."""
        data = asdict(self)
        data["workload"] = self.workload.to_spec()
        data["chaos"] = self.chaos.to_dict()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSpec:
        """The spec :meth:`to_json` wrote."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["workload"] = Workload(**data["workload"])
        values["chaos"] = Chaos(**data["chaos"])
        return cls(**values)


RUN_KEYWORDS = (
    "workload",
    "threads",
    "ops_per_thread",
    "duration",
    "chaos",
    "path",
    "registration",
    "isolate",
    "seed",
    "evidence_cap",
)
"""The keywords of ``run()`` (and of the marker and an ``rseq_stress()`` call)."""


@dataclass(frozen=True)
class ChildOrder:
    """What the parent hands the child process: the run, the host's preparation, and
    the file the child writes its result to."""

    spec: RunSpec
    host: HostPrep
    result_path: str

    def to_json(self) -> dict[str, Any]:
        """The JSON document the child reads on its stdin."""
        return {
            "spec": self.spec.to_json(),
            "host": self.host.to_json(),
            "result_path": self.result_path,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChildOrder:
        """The order :meth:`to_json` wrote."""
        return cls(
            spec=RunSpec.from_json(data["spec"]),
            host=HostPrep.from_json(data["host"]),
            result_path=str(data["result_path"]),
        )
