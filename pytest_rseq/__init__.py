"""pytest-rseq: stress-test Linux restartable-sequences code under lifecycle chaos.

The whole public API is here; ``pytest_rseq.plugin`` is the pytest plugin.
"""

from __future__ import annotations

from pathlib import Path

from ._version import __version__
from .elf.lint import LintError, LintFinding, lint
from .elf.mutants import Mutant, mutants
from .engine.chaos import Chaos
from .engine.result import StressResult
from .engine.runner import run
from .engine.workload import BUILTIN_WORKLOADS, Workload
from .errors import CapabilityMissing, ConsistencyError, RseqError, WorkloadError
from .host.capabilities import capabilities

__all__ = [
    "BUILTIN_WORKLOADS",
    "CapabilityMissing",
    "Chaos",
    "ConsistencyError",
    "LintError",
    "LintFinding",
    "Mutant",
    "RseqError",
    "StressResult",
    "Workload",
    "WorkloadError",
    "__version__",
    "capabilities",
    "get_include",
    "lint",
    "mutants",
    "run",
]


def get_include() -> str:
    """Return the folder holding ``pytest_rseq.h`` (pass it to the compiler with ``-I``)."""
    return str(Path(__file__).resolve().parent / "include")
