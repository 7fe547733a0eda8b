"""Exceptions raised by pytest-rseq."""

from __future__ import annotations


class RseqError(Exception):
    """Base class of pytest-rseq's own errors."""


class CapabilityMissing(RseqError):
    """The machine lacks what a run asks for (the plugin turns this into a skip)."""


class WorkloadError(RseqError):
    """A workload library could not be loaded or is not a valid prseq workload."""


class ConsistencyError(AssertionError):
    """A stress run's result disagrees with the fallback-path oracle."""
