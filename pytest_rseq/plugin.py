"""The pytest plugin: fixtures, the ``rseq`` marker and options, metrics, summary and JSON.

How it works, in a few lines:

* ``pytest_configure`` validates the ``--rseq-*`` options (``options.py``) and
  picks the session seed on the controller; xdist workers get it through
  ``workerinput`` (``xdist_hooks.py``).
* The ``rseq_stress`` fixture merges its defaults (options, then the marker,
  then the call), derives each run's seed from the session seed and the node
  id (``seeds.py``), runs it, and keeps one JSON-safe row per run.
* The rows ride on the test report as ``report.rseq_runs``, so they cross
  xdist like any report attribute and survive a worker that dies later; a
  failed test also gets an ``rseq`` section with the seed and the command
  that repeats it alone.
* The controller collects the rows from ``pytest_runtest_logreport`` and
  prints one ``rseq`` summary (``report.py``); ``--rseq-json`` writes them.

Loading this module imports nothing native: the compiled core is loaded on
the first run (or for the header's fingerprint), so a host without it still
runs pytest.
"""

from __future__ import annotations

import inspect
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import options, report, seeds
from .options import Settings
from .result import StressResult

MARKER_HELP = (
    "rseq(**kwargs): defaults for the rseq_stress fixture; the keywords are those "
    "of pytest_rseq.run (workload, threads, ops_per_thread, duration, chaos, path, "
    "registration, isolate, seed)"
)
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


def run_keywords() -> list[str]:
    """The keyword arguments of :func:`pytest_rseq.run`, the marker's allow-list."""
    from .runner import run

    return list(inspect.signature(run).parameters)


def check_marker(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str | None:
    """Why an ``@pytest.mark.rseq(...)`` is invalid, or None when it is fine."""
    from .runner import build_spec

    allowed = run_keywords()
    if args:
        return f"takes keyword arguments only ({', '.join(allowed)}); got positional {args!r}"
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        return f"unknown keyword(s) {', '.join(unknown)}; run() takes {', '.join(allowed)}"
    if not isinstance(kwargs.get("isolate", True), bool):
        return f"isolate must be True or False, got {kwargs['isolate']!r}"
    try:
        build_spec(
            kwargs.get("workload", "counter"),
            threads=kwargs.get("threads"),
            ops_per_thread=kwargs.get("ops_per_thread"),
            duration=kwargs.get("duration", 1.0),
            chaos=kwargs.get("chaos"),
            path=kwargs.get("path", "rseq"),
            registration=kwargs.get("registration", "auto"),
            seed=kwargs.get("seed", 0),
        )
    except ValueError as exc:
        return str(exc)
    return None


def is_worker(config: pytest.Config) -> bool:
    """True inside an xdist worker."""
    return hasattr(config, "workerinput")


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ``rseq`` option group (see ``pytest_rseq.options``)."""
    options.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, validate the options, pick the seed, hook into xdist."""
    config.addinivalue_line("markers", MARKER_HELP)
    settings = options.read_settings(config)
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and seeds.WORKERINPUT_KEY in workerinput:
        seed = int(workerinput[seeds.WORKERINPUT_KEY])
        worker = str(workerinput.get("workerid", "worker"))
    else:
        seed = seeds.session_seed(config, settings.seed, settings.seed_last)
        worker = "main"
    json_path = Path(config.invocation_params.dir, settings.json) if settings.json else None
    state = State(settings=settings, seed=seed, worker=worker, json_path=json_path)
    config.stash[STATE] = state
    config.pluginmanager.register(Collector(config, state), "rseq-collector")
    if config.pluginmanager.hasplugin("xdist"):
        from .xdist_hooks import XdistHooks

        config.pluginmanager.register(XdistHooks(seed), "rseq-xdist")


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The fingerprint in two lines and the flags that repeat the run's seeds."""
    state = config.stash[STATE]
    lines = [f"rseq: {line}" for line in report.fingerprint_lines(report.host_fingerprint())]
    flags = " ".join(options.as_flags(state.settings, state.seed))
    lines.append(f"rseq: repeat with {flags}")
    return lines


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Check every ``@pytest.mark.rseq`` against ``run()``'s signature and value checks."""
    for item in items:
        problems = [
            why for mark in item.iter_markers("rseq") if (why := check_marker(*_args(mark)))
        ]
        if problems:
            item.stash[MARKER_PROBLEM] = f"@pytest.mark.rseq on {item.nodeid}: " + "; ".join(
                problems
            )


def _args(mark: pytest.Mark) -> tuple[tuple[Any, ...], Mapping[str, Any]]:
    return mark.args, mark.kwargs


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Error a test whose ``rseq`` marker is invalid (the same with and without xdist)."""
    problem = item.stash.get(MARKER_PROBLEM, None)
    if problem:
        pytest.fail(problem, pytrace=False)


def repro_command(config: pytest.Config, nodeid: str) -> str:
    """A shell command that repeats the test ``nodeid`` alone with this run's seeds."""
    state = config.stash[STATE]
    flags = options.as_flags(state.settings, state.seed)
    cmd = shlex.join(["python", "-m", "pytest", nodeid, *flags])
    rootdir = Path(config.rootpath)
    if Path(config.invocation_params.dir) != rootdir:
        cmd = f"cd {shlex.quote(str(rootdir))} && {cmd}"
    return cmd


def _with_outcome(row: dict[str, Any], rep: pytest.TestReport) -> dict[str, Any]:
    """The row with the test's outcome; a failed run in a passing test was expected: caught."""
    row = {**row, "outcome": rep.outcome}
    if row["verdict"] == "FAIL" and rep.passed:
        row["verdict"] = "caught"
    return row


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the phase's stress rows to the report; add the repro section to a failure."""
    outcome = yield
    rep = outcome.get_result()
    rows = item.stash.get(ROWS, [])
    sent = item.stash.get(ROWS_SENT, 0)
    if len(rows) > sent:
        fp = report.host_fingerprint()
        rep.rseq_runs = [_with_outcome(row, rep) for row in rows[sent:]]
        rep.rseq_host = {"id": report.host_id(fp), "fingerprint": fp}
        item.stash[ROWS_SENT] = len(rows)
    if rep.failed and rows:
        state = item.config.stash[STATE]
        text = "\n".join(
            [
                f"session seed {state.seed}; this test's run seeds: "
                + ", ".join(str(r["seed"]) for r in rows),
                "repeat this test alone:",
                f"  {repro_command(item.config, item.nodeid)}",
            ]
        )
        if hasattr(rep.longrepr, "addsection"):
            rep.longrepr.addsection("rseq", text)
        else:
            rep.sections.append(("rseq", text))


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


@pytest.fixture
def rseq_capabilities() -> dict[str, Any]:
    """The machine's rseq fingerprint (see ``pytest_rseq.capabilities``)."""
    from .capabilities import capabilities

    return capabilities()


def _live_emitter(config: pytest.Config) -> tuple[Callable[[str, bool], None], bool] | None:
    tr = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")
    if tr is None or capman is None or is_worker(config):
        return None

    def emit(text: str, rewrite: bool) -> None:
        with capman.global_and_fixture_disabled():
            if rewrite:
                tr.rewrite(text, erase=True)
            else:
                tr.write_line(text)

    return emit, bool(getattr(tr, "isatty", False))


def _run_with_progress(
    config: pytest.Config, workload: Any, kwargs: dict[str, Any]
) -> StressResult:
    from .progress import LIVE_AFTER_S, LiveLine
    from .runner import run

    duration = float(kwargs.get("duration", 1.0))
    factor = 2 if kwargs.get("path") == "both" else 1
    emitter = _live_emitter(config) if duration * factor >= LIVE_AFTER_S else None
    if emitter is None:
        return run(workload, **kwargs)
    label = f"{getattr(workload, 'name', workload)} {kwargs.get('path', 'rseq')}"
    with LiveLine(emitter[0], label, duration * factor, tty=emitter[1]):
        return run(workload, **kwargs)


@pytest.fixture
def rseq_stress(request: pytest.FixtureRequest) -> Callable[..., StressResult]:
    """A callable with ``pytest_rseq.run``'s signature, defaulted from options and the marker.

    Defaults, weakest first: the ``--rseq-*`` options (and ``rseq_*`` ini keys),
    ``@pytest.mark.rseq(...)`` (closest marker wins), the call's own keywords.
    A run without an explicit seed gets one derived from the session seed and
    the node id. A run the machine cannot do (``CapabilityMissing``) skips the
    test with the reason.
    """
    from .errors import CapabilityMissing

    config = request.config
    state = config.stash[STATE]
    item = request.node
    marker: dict[str, Any] = {}
    for mark in reversed(list(item.iter_markers("rseq"))):
        marker.update(mark.kwargs)
    rows = item.stash.setdefault(ROWS, [])

    def stress(workload: Any = None, **kwargs: Any) -> StressResult:
        unknown = sorted(set(kwargs) - set(run_keywords()))
        if unknown:
            raise TypeError(f"rseq_stress() got unexpected keyword(s) {', '.join(unknown)}")
        merged = {**state.settings.run_defaults(), **marker, **kwargs}
        target = workload if workload is not None else merged.pop("workload", "counter")
        merged.pop("workload", None)
        index = len(rows)
        if merged.get("seed") is None:
            merged["seed"] = seeds.derive(state.seed, item.nodeid, index)
        if state.settings.smoke:
            merged["duration"] = min(float(merged.get("duration", 1.0)), options.SMOKE_DURATION_S)
        chaos = merged.get("chaos")
        hotplug = chaos is not None and getattr(chaos, "hotplug_hz", 0) > 0
        if hotplug and not state.settings.allow_hotplug:
            pytest.skip("CPU hotplug chaos (hotplug_hz > 0) needs --rseq-allow-hotplug")
        try:
            result = _run_with_progress(config, target, merged)
        except CapabilityMissing as exc:
            pytest.skip(f"rseq capability missing: {exc}")
        fp = report.host_fingerprint()
        rows.append(
            report.make_row(
                result, test=item.nodeid, index=index, worker=state.worker, host=report.host_id(fp)
            )
        )
        return result

    return stress
