"""xdist integration, registered only when pytest-xdist is active.

The controller sends the session seed to every worker through
``workerinput`` (primitives only); the rows come back on the test reports.
"""

from __future__ import annotations

from typing import Any

from ..engine.seeds import WORKERINPUT_KEY


class XdistHooks:
    """Hooks that exist only under xdist."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def pytest_configure_node(self, node: Any) -> None:
        """Send the session seed to a new worker."""
        node.workerinput[WORKERINPUT_KEY] = self.seed
