"""The pytest plugin: the ``rseq_stress`` and ``rseq_capabilities`` fixtures and the marker.

Loading this module imports nothing native: the compiled core is loaded on
the first run, so a host without it still runs pytest.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from .result import StressResult

MARKER_HELP = (
    "rseq(**kwargs): defaults for the rseq_stress fixture; the keywords are those "
    "of pytest_rseq.run (threads, ops_per_thread, duration, chaos, path, "
    "registration, isolate, seed)"
)


def _run_keywords() -> set[str]:
    from .runner import run

    return {n for n, p in inspect.signature(run).parameters.items() if p.kind == p.KEYWORD_ONLY}


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``rseq`` marker."""
    config.addinivalue_line("markers", MARKER_HELP)


@pytest.fixture
def rseq_capabilities() -> dict[str, Any]:
    """The machine's rseq fingerprint (see ``pytest_rseq.capabilities``)."""
    from .capabilities import capabilities

    return capabilities()


@pytest.fixture
def rseq_stress(request: pytest.FixtureRequest) -> Callable[..., StressResult]:
    """A callable with ``pytest_rseq.run``'s signature, defaulted from ``@pytest.mark.rseq``.

    A run the machine cannot do (``CapabilityMissing``) skips the test with
    the reason.
    """
    from .errors import CapabilityMissing
    from .runner import run

    defaults: dict[str, Any] = {}
    allowed = _run_keywords()
    for mark in reversed(list(request.node.iter_markers("rseq"))):
        unknown = sorted(set(mark.kwargs) - allowed)
        if unknown or mark.args:
            raise pytest.UsageError(
                f"@pytest.mark.rseq takes keywords of run() only "
                f"({', '.join(sorted(allowed))}); got {unknown or mark.args}"
            )
        defaults.update(mark.kwargs)

    def stress(workload: Any = "counter", **kwargs: Any) -> StressResult:
        try:
            return run(workload, **{**defaults, **kwargs})
        except CapabilityMissing as exc:
            pytest.skip(f"rseq capability missing: {exc}")

    return stress
