"""The environment gate (``python -m pytest_rseq``): its scenario suite, verdicts and report.

``suite`` lists the scenarios (the injector ones from the injector
registry), ``checks`` the two that are not a stress run, ``seccomp`` the
after-start seccomp probe (parent and child side), ``verdicts`` runs and
judges them and gives the exit code, ``outcome`` the verdict words;
``report`` holds the host fingerprint and the text tables the gate and the
pytest summary print.

Calls go down: the gate runs ``engine`` and reads ``host``; ``plugin`` uses
``report`` for its fingerprint lines. The gate never imports ``plugin``.
"""

from __future__ import annotations

from .outcome import (
    EXIT_COULD_NOT_TEST,
    EXIT_FAIL,
    EXIT_PASS,
    FAIL,
    NA,
    NOT_TESTED,
    OFF,
    PASS,
    SKIP,
    VERDICTS,
    Outcome,
)
from .suite import Scenario, scenarios
from .verdicts import judge, overall, resolve_required, run_gate, run_scenario

__all__ = [
    "EXIT_COULD_NOT_TEST",
    "EXIT_FAIL",
    "EXIT_PASS",
    "FAIL",
    "NA",
    "NOT_TESTED",
    "OFF",
    "PASS",
    "SKIP",
    "VERDICTS",
    "Outcome",
    "Scenario",
    "judge",
    "overall",
    "resolve_required",
    "run_gate",
    "run_scenario",
    "scenarios",
]
