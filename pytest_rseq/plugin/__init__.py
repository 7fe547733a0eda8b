"""The pytest plugin: fixtures, the ``rseq`` marker and options, metrics, summary and JSON.

This folder is the pytest glue (this module holds the hooks; pytest loads it
through the ``pytest11`` entry point). Calls go down: the plugin uses
``engine`` (the run), ``host``, ``elf`` (lint, mutation) and ``gate.report``
(the host fingerprint); nothing else in the package imports it.

How it works, in a few lines:

* ``pytest_configure`` validates the ``--rseq-*`` options (``options.py``) and
  picks the session seed on the controller; xdist workers get it through
  ``workerinput`` (``xdist_hooks.py``).
* The ``rseq_stress`` fixture (``fixtures.py``) merges its defaults (options, then the marker,
  then the call), derives each run's seed from the session seed and the node
  id (``engine/seeds.py``), runs it, and keeps one JSON-safe row per run.
* The rows ride on the test report as ``report.rseq_runs``, so they cross
  xdist like any report attribute and survive a worker that dies later; a
  failed test also gets an ``rseq`` section with the seed and the command
  that repeats it alone.
* The controller collects the rows from ``pytest_runtest_logreport`` and
  prints one ``rseq`` summary; ``--rseq-json`` writes them (``session.py``,
  rendering in ``summary.py`` and ``rows.py``). The header lines appear only
  when rseq tests are collected, or with ``-v``.

Loading this module imports nothing native: the compiled core is loaded on
the first run (or for the header's fingerprint), so a host without it still
runs pytest.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ..engine import seeds
from ..gate import report
from ..host import perf, sigterm
from ..vm import xdist_kernels
from . import json_target, options
from .fixtures import MARKER_ONLY_KEYWORDS, rseq_capabilities, rseq_stress, run_keywords
from .session import MARKER_PROBLEM, MUTATION_FAILURES, ROWS, ROWS_SENT, STATE, Collector, State

__all__ = ["rseq_capabilities", "rseq_stress"]  # fixtures, found by pytest on this plugin

SIGTERM_BEFORE = pytest.StashKey[object]()

MARKER_HELP = (
    "rseq(**kwargs): defaults for the rseq_stress fixture; the keywords are those "
    "of pytest_rseq.run (workload, threads, ops_per_thread, duration, chaos, path, "
    "registration, isolate, seed, evidence_cap), plus mutate=True|False "
    "(run the call on mutants of its library too, see --rseq-mutate)"
)


def check_marker(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str | None:
    """Why an ``@pytest.mark.rseq(...)`` is invalid, or None when it is fine."""
    from ..engine.spec import RunSpec

    allowed = [*run_keywords(), *MARKER_ONLY_KEYWORDS]
    if args:
        return f"takes keyword arguments only ({', '.join(allowed)}); got positional {args!r}"
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        return f"unknown keyword(s) {', '.join(unknown)}; run() takes {', '.join(allowed)}"
    if not isinstance(kwargs.get("mutate", True), bool):
        return f"mutate must be True or False, got {kwargs['mutate']!r}"
    try:
        RunSpec.from_layers(
            {k: v for k, v in kwargs.items() if k not in MARKER_ONLY_KEYWORDS}, default_seed=0
        )
    except ValueError as exc:
        return str(exc)
    return None


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ``rseq`` option group (see ``pytest_rseq.options``)."""
    options.add_options(parser)
    xdist_kernels.add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Turn ``--rseq-kernel`` into xdist workers running in VMs (``vm/xdist_kernels.py``)."""
    xdist_kernels.configure(config)


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
    if json_path is not None and settings.json and workerinput is None:
        source = "--rseq-json" if config.getoption("--rseq-json") is not None else "ini rseq_json"
        json_target.check_writable(json_path, source, settings.json)
    state = State(settings=settings, seed=seed, worker=worker, json_path=json_path)
    config.stash[STATE] = state
    config.stash[SIGTERM_BEFORE] = sigterm.install()
    if settings.perf:
        perf.set_requested(True)
    config.pluginmanager.register(Collector(config, state), "rseq-collector")
    if config.pluginmanager.hasplugin("xdist"):
        from .xdist_hooks import XdistHooks

        config.pluginmanager.register(XdistHooks(seed), "rseq-xdist")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Put back the SIGTERM disposition ``pytest_configure`` replaced, and hand the perf
    cross-check back to ``PYTEST_RSEQ_PERF`` (``--rseq-perf`` was per session)."""
    sigterm.uninstall(config.stash.get(SIGTERM_BEFORE, None))
    if STATE in config.stash and config.stash[STATE].settings.perf:
        perf.set_requested(None)


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Fail a test whose mutation-tested calls left a mutant alive (or judged nothing)."""
    result = yield
    problems = item.stash.get(MUTATION_FAILURES, [])
    if problems:
        pytest.fail(
            "rseq mutation: " + "\n  ".join(["the test lacks teeth:", *problems]), pytrace=False
        )
    return result


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
    """The row with the test's outcome (the summary reads the run's verdict with it)."""
    return {**row, "outcome": rep.outcome}


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
