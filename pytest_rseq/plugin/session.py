"""Per-process state of the plugin, and what the controller prints and writes.

``State`` lives in ``config.stash``; ``Collector`` is registered as a plugin
object on every process, but only the controller (or a run without xdist)
prints the header, the progress lines and the summary, or writes
``--rseq-json``. The header appears only when rseq tests were collected
(tests using ``rseq_stress`` or ``rseq_capabilities``, or marked ``rseq``)
or with ``-v``: a project without rseq tests sees nothing from the plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..gate import report
from . import options, summary
from .options import Settings
from .progress import Heartbeat
from .rows import json_document, status, write_json

SUMMARY_TITLE = "rseq summary"
RSEQ_FIXTURES = ("rseq_stress", "rseq_capabilities")


@dataclass
class State:
    """What the plugin keeps for one pytest process (in ``config.stash``)."""

    settings: Settings
    seed: int
    worker: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    json_path: Path | None = None
    header_shown: bool = False


STATE = pytest.StashKey[State]()
MUTATION_FAILURES = pytest.StashKey[list[str]]()
"""Why a test's mutation-tested calls fail it (``--rseq-mutate``)."""
ROWS = pytest.StashKey[list[dict[str, Any]]]()
ROWS_SENT = pytest.StashKey[int]()
MARKER_PROBLEM = pytest.StashKey[str]()


def is_worker(config: pytest.Config) -> bool:
    """True inside an xdist worker."""
    return hasattr(config, "workerinput")


def is_xdist_controller(config: pytest.Config) -> bool:
    """True in the process that hands tests to xdist workers."""
    return config.pluginmanager.has_plugin("dsession")


def uses_rseq(item: pytest.Item) -> bool:
    """True for a test that uses the plugin's fixtures or its marker."""
    names = getattr(item, "fixturenames", ())
    return any(f in names for f in RSEQ_FIXTURES) or item.get_closest_marker("rseq") is not None


def header_lines(state: State) -> list[str]:
    """The fingerprint in two lines and the flags that repeat the run's seeds."""
    lines = [f"rseq: {line}" for line in report.fingerprint_lines(report.host_fingerprint())]
    flags = " ".join(options.as_flags(state.settings, state.seed))
    lines.append(f"rseq: repeat with {flags}")
    return lines


class Collector:
    """Collects the rows of every report, then writes the summary and the JSON.

    Registered on every process; only the controller (or a run without
    xdist) prints or writes anything.
    """

    def __init__(self, config: pytest.Config, state: State) -> None:
        self.config = config
        self.state = state
        self.heartbeat: Heartbeat | None = None

    def _terminal(self) -> Any:
        return self.config.pluginmanager.get_plugin("terminalreporter")

    def _width(self) -> int:
        tr = self._terminal()
        return int(getattr(getattr(tr, "_tw", None), "fullwidth", 0) or 100)

    def _write(self, line: str) -> None:
        """Write ``line`` on a line of its own (xdist's progress dots leave one open)."""
        tr = self._terminal()
        if tr is None:
            return
        if getattr(getattr(tr, "_tw", None), "width_of_current_line", 0):
            tr.write("\n")
        tr.write_line(line)

    def pytest_report_header(self) -> list[str]:
        """With ``-v``, the header lines at the start of the session."""
        if self.config.get_verbosity() <= 0 or is_worker(self.config):
            return []
        self.state.header_shown = True
        return header_lines(self.state)

    def _header_wanted(self) -> bool:
        """Not shown yet, and pytest shows headers (not ``-q``, not ``--no-header``)."""
        quiet = self.config.get_verbosity() < 0 or self.config.getoption("no_header", False)
        return not (self.state.header_shown or quiet or is_worker(self.config))

    def pytest_report_collectionfinish(self, items: list[pytest.Item]) -> list[str]:
        """The header lines after collection, when an rseq test was collected."""
        if not self._header_wanted() or not any(uses_rseq(item) for item in items):
            return []
        self.state.header_shown = True
        return header_lines(self.state)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item) -> Any:
        """Mark the setup and teardown reports of an rseq test with the worker that runs it."""
        rep = yield
        if rep.when in ("setup", "teardown") and uses_rseq(item):
            rep.rseq_test = self.state.worker
        return rep

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep the rows of a report (on the controller, those of all workers).

        Under xdist the controller also prints the header at the first rseq
        test, a line per finished run, and the heartbeat of long tests.
        """
        if is_xdist_controller(self.config):
            self._xdist_progress(report)
        rows = getattr(report, "rseq_runs", None)
        if not rows:
            return
        self.state.rows.extend(rows)
        host = getattr(report, "rseq_host", None)
        if isinstance(host, dict) and "id" in host:
            self.state.hosts[str(host["id"])] = host["fingerprint"]

    def _xdist_progress(self, report: pytest.TestReport) -> None:
        worker = getattr(report, "rseq_test", None)
        if worker is not None and self._header_wanted():
            self.state.header_shown = True
            for line in header_lines(self.state):
                self._write(line)
        if worker is not None and report.when == "setup" and report.passed:
            if self.heartbeat is None:
                self.heartbeat = Heartbeat(self._write)
            self.heartbeat.started(report.nodeid, str(worker))
        for row in getattr(report, "rseq_runs", None) or []:
            self._write(run_line(row, self._width()))
        if self.heartbeat is not None and report.when in ("teardown", "???"):
            # "???": xdist's report for a test whose worker died
            self.heartbeat.finished(report.nodeid, None if worker is None else str(worker))

    def pytest_sessionfinish(self) -> None:
        """Stop the heartbeat; write ``--rseq-json`` on the controller."""
        if self.heartbeat is not None:
            self.heartbeat.close()
        state = self.state
        if is_worker(self.config) or state.json_path is None:
            return
        doc = json_document(
            state.rows,
            state.hosts,
            seed=state.seed,
            flags=options.as_flags(state.settings, state.seed),
            controller=report.host_fingerprint(),
        )
        write_json(state.json_path, doc)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Print the ``rseq`` summary once, on the controller."""
        state = self.state
        if is_worker(self.config) or not (state.rows or state.json_path):
            return
        tr = terminalreporter
        tr.write_sep("=", SUMMARY_TITLE)
        if state.rows:
            for line in summary.summary_lines(state.rows, width=self._width()):
                tr.write_line(line)
        else:
            tr.write_line("no stress runs")
        tr.write_line(f"session seed: --rseq-seed={state.seed}")
        if state.json_path is not None:
            tr.write_line(f"rseq JSON report: {state.json_path}")


def run_line(row: dict[str, Any], width: int) -> str:
    """The controller's line for a run that finished on a worker, e.g.
    ``rseq: [gw1] t.py::test_a: FAILED: bug (canary_racy rseq, 0.1 s)``.

    The test id stays whole; the details in parentheses go when the line would
    be wider than ``width``.
    """
    test = str(row["test"]) + (f" #{row['index']}" if row.get("index") else "")
    line = f"rseq: [{row.get('worker')}] {test}: {status(row)}"
    details = f" ({row.get('workload')} {row.get('path')}, {row.get('duration_s', 0):.1f} s)"
    return line + details if len(line) + len(details) <= width else line
