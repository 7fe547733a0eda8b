"""Per-process state of the plugin, and the controller's summary and JSON.

``State`` lives in ``config.stash``; ``Collector`` is registered as a plugin
object on every process, but only the controller (or a run without xdist)
prints the summary or writes ``--rseq-json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import options, report
from .options import Settings

SUMMARY_TITLE = "rseq summary"


@dataclass
class State:
    """What the plugin keeps for one pytest process (in ``config.stash``)."""

    settings: Settings
    seed: int
    worker: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    json_path: Path | None = None


STATE = pytest.StashKey[State]()
ROWS = pytest.StashKey[list[dict[str, Any]]]()
ROWS_SENT = pytest.StashKey[int]()
MARKER_PROBLEM = pytest.StashKey[str]()


def is_worker(config: pytest.Config) -> bool:
    """True inside an xdist worker."""
    return hasattr(config, "workerinput")


class Collector:
    """Collects the rows of every report, then writes the summary and the JSON.

    Registered on every process; only the controller (or a run without
    xdist) prints or writes anything.
    """

    def __init__(self, config: pytest.Config, state: State) -> None:
        self.config = config
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep the rows of a report (on the controller, those of all workers)."""
        rows = getattr(report, "rseq_runs", None)
        if not rows:
            return
        self.state.rows.extend(rows)
        host = getattr(report, "rseq_host", None)
        if isinstance(host, dict) and "id" in host:
            self.state.hosts[str(host["id"])] = host["fingerprint"]

    def pytest_sessionfinish(self) -> None:
        """Write ``--rseq-json`` on the controller."""
        state = self.state
        if is_worker(self.config) or state.json_path is None:
            return
        doc = report.json_document(
            state.rows,
            state.hosts,
            seed=state.seed,
            flags=options.as_flags(state.settings, state.seed),
            controller=report.host_fingerprint(),
        )
        report.write_json(state.json_path, doc)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Print the ``rseq`` summary once, on the controller."""
        state = self.state
        if is_worker(self.config) or not (state.rows or state.json_path):
            return
        tr = terminalreporter
        tr.write_sep("=", SUMMARY_TITLE)
        if state.rows:
            width = getattr(getattr(tr, "_tw", None), "fullwidth", 100)
            for line in report.summary_lines(state.rows, width=width):
                tr.write_line(line)
        else:
            tr.write_line("no stress runs")
        tr.write_line(f"session seed: --rseq-seed={state.seed}")
        if state.json_path is not None:
            tr.write_line(f"rseq JSON report: {state.json_path}")
