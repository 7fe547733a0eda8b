"""``--rseq-arch``: the selected tests run by pytest inside the guest, its reports merged here.

Used for guests that cannot carry an xdist worker (the arm64 guest talks
through its console, not a stdin/stdout pipe). After the host's own tests,
each guest runs ``python -m pytest`` with the same arguments (minus the VM
and report-file options) and this module loaded as a plugin (``-p
pytest_rseq.vm.guest_pytest``), which writes every test report, serialised
the way xdist sends them, to ``$PRSEQ_GUEST_OUT/reports.jsonl``. The host
replays them through ``pytest_runtest_logreport`` with the guest's label on
each node id (``test_x[aarch64]``), so they count, print and reach
``--junitxml`` like its own. A guest that cannot start, or a run that leaves
no reports, is one failed report that says why.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import pytest

from .guest import OUT_ENV, GuestUnavailable
from .targets import Target

REPORTS = "reports.jsonl"
GUEST_PYTEST_TIMEOUT_S = 3600.0
DROPPED_WITH_VALUE = ("--rseq-arch", "--rseq-kernel", "--rseq-json", "--junitxml", "--junit-xml")
DROPPED_FLAGS = ("--rseq-vm-cgroup-v2-only",)


class _ReportWriter:
    """Guest side: every report as one JSON line."""

    def __init__(self, config: pytest.Config, path: Path) -> None:
        self.config, self.path = config, path

    def _write(self, report: Any) -> None:
        data = self.config.hook.pytest_report_to_serializable(config=self.config, report=report)
        with self.path.open("a") as fh:
            fh.write(json.dumps(data) + "\n")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep each test phase's report."""
        self._write(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """Keep collection errors (a guest that cannot import a test module says so)."""
        if report.failed:
            self._write(report)


def pytest_configure(config: pytest.Config) -> None:
    """In the guest (``$PRSEQ_GUEST_OUT`` set): start writing reports."""
    out = os.environ.get(OUT_ENV)
    if out:
        config.pluginmanager.register(_ReportWriter(config, Path(out) / REPORTS), "rseq-guest-log")


def guest_args(args: Sequence[str]) -> list[str]:
    """The invocation's arguments without the VM options and host report files."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in DROPPED_FLAGS:
            continue
        if arg in DROPPED_WITH_VALUE:
            skip = True
            continue
        if any(arg.startswith(f"{opt}=") for opt in DROPPED_WITH_VALUE):
            continue
        out.append(arg)
    return out


def guest_command(python: str, args: Sequence[str], cwd: str) -> str:
    """The shell command that runs pytest in the guest with the report writer loaded."""
    argv = [python, "-m", "pytest", "-p", __name__, "-p", "no:cacheprovider", *guest_args(args)]
    return f"cd {shlex.quote(cwd)} 2>/dev/null || true; " + " ".join(shlex.quote(a) for a in argv)


class GuestSessions:
    """Host side: after the host's tests, run them in each guest and replay the reports."""

    def __init__(self, config: pytest.Config, targets: Sequence[Target]) -> None:
        self.config, self.targets = config, list(targets)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, Any, None]:
        """Run the host's loop, then one guest session per target."""
        yield
        for target in self.targets:
            for report in self.guest_reports(target):
                self.config.hook.pytest_runtest_logreport(report=report)

    def _failure(self, label: str, why: str) -> pytest.TestReport:
        return pytest.TestReport(
            nodeid=f"[{label}]", location=(label, None, f"guest {label}"), keywords={},
            outcome="failed", longrepr=f"guest {label}: {why}", when="call",
        )  # fmt: skip

    def guest_reports(self, target: Target) -> list[pytest.TestReport]:
        """The guest's reports, relabelled; or one failed report saying why there are none."""
        params = self.config.invocation_params
        try:
            guest = target.make()
            guest.check()
            command = guest_command(guest.python, params.args, str(params.dir))
            result = guest.run(command, timeout_s=GUEST_PYTEST_TIMEOUT_S)
        except GuestUnavailable as exc:
            return [self._failure(target.label, f"could not start: {exc}")]
        try:
            lines = (result.out_dir / REPORTS).read_text().splitlines()
        except OSError:
            lines = []
        finally:
            shutil.rmtree(result.out_dir, ignore_errors=True)
        reports = []
        for line in lines:
            report = self.config.hook.pytest_report_from_serializable(
                config=self.config, data=json.loads(line)
            )
            if isinstance(report, pytest.TestReport):
                report.nodeid = f"{report.nodeid}[{guest.label}]"
                reports.append(report)
            elif report is not None and report.failed:
                reports.append(self._failure(guest.label, f"collection failed: {report.longrepr}"))
        if not reports:
            tail = " / ".join(result.output.strip().splitlines()[-10:])
            reports.append(
                self._failure(guest.label, f"no test reports (exit {result.returncode}): {tail}")
            )
        return reports
