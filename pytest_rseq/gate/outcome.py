"""A gate scenario's verdict: the words, the exit codes, and :class:`Outcome`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EXIT_PASS, EXIT_FAIL, EXIT_COULD_NOT_TEST = 0, 1, 2
PASS, FAIL, SKIP, OFF = "PASS", "FAIL", "SKIP", "OFF"
NOT_TESTED = "NOT TESTED"
NA = "N/A"
"""Not applicable on this kernel (e.g. mm_cid before Linux 6.3): a result, not a skip."""
VERDICTS = (PASS, FAIL, SKIP, NOT_TESTED, OFF, NA)


@dataclass
class Outcome:
    """The verdict of one scenario, with the run's metrics when there was a run."""

    name: str
    what: str
    verdict: str
    detail: str
    seconds: float = 0.0
    result: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "name": self.name,
            "what": self.what,
            "verdict": self.verdict,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
            "result": self.result,
        }
