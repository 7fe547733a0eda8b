"""The environment gate (``python -m pytest_rseq``): its scenario suite, verdicts and report.

``suite`` holds the scenarios and judges them; ``report`` the host
fingerprint and the text tables the gate and the pytest summary print.

Calls go down: the gate runs ``engine`` and reads ``host``; ``plugin`` uses
``report`` for its fingerprint lines. The gate never imports ``plugin``.
"""

from __future__ import annotations

from .suite import (
    EXIT_COULD_NOT_TEST,
    EXIT_FAIL,
    EXIT_PASS,
    FAIL,
    NOT_TESTED,
    OFF,
    PASS,
    SKIP,
    Outcome,
    Scenario,
    judge,
    overall,
    resolve_required,
    run_gate,
    run_scenario,
    scenarios,
)

__all__ = [
    "EXIT_COULD_NOT_TEST",
    "EXIT_FAIL",
    "EXIT_PASS",
    "FAIL",
    "NOT_TESTED",
    "OFF",
    "PASS",
    "SKIP",
    "Outcome",
    "Scenario",
    "judge",
    "overall",
    "resolve_required",
    "run_gate",
    "run_scenario",
    "scenarios",
]
