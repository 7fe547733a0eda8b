"""Exceptions raised by pytest-rseq."""

from __future__ import annotations

from typing import Any


class RseqError(Exception):
    """Base class of pytest-rseq's own errors."""


class CapabilityMissing(RseqError):
    """The machine lacks what a run asks for (the plugin turns this into a skip)."""


class WorkloadError(RseqError):
    """A workload library could not be loaded or is not a valid prseq workload."""


class ConsistencyError(AssertionError):
    """A stress run's result disagrees with the fallback-path oracle."""


CALLER_ERRORS = (ValueError, TypeError, RseqError, ConsistencyError)
"""The errors :func:`hide_for_caller_errors` hides plugin frames for."""


def hide_for_caller_errors(excinfo: Any) -> bool:
    """A ``__tracebackhide__`` for pytest: hide the frame for an error about the caller's request.

    A bad argument, a missing capability, a workload that will not load or a
    failed consistency check is explained by its message; the plugin frames
    it passes through only hide the caller's line. Any other exception (a bug
    in pytest-rseq) keeps every frame.
    """
    return excinfo is not None and bool(excinfo.errisinstance(CALLER_ERRORS))
