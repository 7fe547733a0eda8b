"""Every time limit of a run, from one place: the fallback half's hang deadline, the
stall allowance that may move an evidence cap, and when the parent kills the child."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .spec import RunSpec

FALLBACK_SLOWDOWN = 30.0
"""The fallback half of ``path="both"`` runs the rseq half's op counts; the fallback
counters are ~10x slower (0.5 vs 5.5 ns an op), so its hang deadline is this many
times the rseq half's real length ..."""
FALLBACK_SLACK_S = 20.0
"""... and at least this much longer than it."""
GRACE_ENV = "PYTEST_RSEQ_CHILD_GRACE_S"
"""Raises the grace below: an emulated guest (QEMU TCG, Python read over 9p) starts
interpreters ~20x slower, so the VM runners set it there."""


def child_grace_s(text: str | None) -> float:
    """The grace ``GRACE_ENV`` sets (30 s when unset or empty).

    Raises:
        ValueError: naming the variable and its value, when it is not a positive number.
    """
    if not text:
        return 30.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{GRACE_ENV}={text!r}: not a positive number of seconds")
    return value


CHILD_GRACE_S = child_grace_s(os.environ.get(GRACE_ENV))
"""On top of a run's own deadlines: interpreter start-up and the result file."""
FALLBACK_ATTEMPTS = 3
"""The fallback half of "both" cannot be extended (its op budgets end it): when a clean
half showed no concurrency, it is run again with the same budgets, at most this often."""


@dataclass(frozen=True)
class Deadlines:
    """Every time limit of one run, in seconds (see :func:`deadlines`)."""

    first_half: float
    """The first (or only) half's evidence cap: the duration times the cap factor (stall
    time moves it by up to :func:`stall_allowance_s`, which ``child`` allows for)."""
    fallback_half: float
    """Longest the fallback half of ``path="both"`` runs (0 for other paths)."""
    child: float
    """When the parent kills the child process: both halves, their joins and the grace."""
    expected: float
    """How long the run is expected to take when nothing extends it (the progress line)."""


def fallback_deadline(first_half_s: float) -> float:
    """The hang deadline of the fallback half of "both", given the rseq half's real length."""
    return max(FALLBACK_SLOWDOWN * first_half_s, first_half_s + FALLBACK_SLACK_S)


def stall_allowance_s() -> float:
    """How far stall time (no worker ended a batch) may move a run's evidence cap
    (``PRSEQ_STALL_ALLOWANCE_MS``, the native core's rule)."""
    from .._native import load

    return float(load()[1].PRSEQ_STALL_ALLOWANCE_MS) / 1000.0


def deadlines(spec: RunSpec) -> Deadlines:
    """Every deadline of ``spec``'s run, from one place."""
    first = spec.duration * spec.resolved_evidence_cap
    # Stall time moves a cap (not a plain deadline) by up to the allowance.
    longest = first + (stall_allowance_s() if spec.resolved_evidence_cap > 1 else 0.0)
    both = spec.path == "both"
    fallback = FALLBACK_ATTEMPTS * fallback_deadline(longest) if both else 0.0
    joins = spec.join_timeout * (1 + (FALLBACK_ATTEMPTS if both else 0))
    return Deadlines(
        first_half=first,
        fallback_half=fallback_deadline(longest) if both else 0.0,
        child=longest + fallback + joins + CHILD_GRACE_S,
        expected=spec.duration * (2 if both else 1),
    )
