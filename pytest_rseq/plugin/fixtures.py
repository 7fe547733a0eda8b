"""The ``rseq_stress`` and ``rseq_capabilities`` fixtures (and the live progress line).

Importing this module loads nothing native: the core is loaded on the first run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from ..elf import mutation
from ..engine import seeds
from ..engine.deadlines import deadlines
from ..engine.result import StressResult
from ..engine.spec import RunSpec
from ..errors import hide_for_caller_errors
from ..gate import report
from . import options
from .rows import make_row
from .session import MUTATION_FAILURES, ROWS, STATE, State, is_worker

MARKER_ONLY_KEYWORDS = ("mutate",)
"""Keywords of the marker (and of an ``rseq_stress`` call) that ``run()`` does not take."""


def _hide_plugin_frame(excinfo: Any) -> bool:
    """Hide the fixture's frames for the caller's errors and for the skips they raise,
    so a failure shows the test's line and a skip is reported at it."""
    return hide_for_caller_errors(excinfo) or (
        excinfo is not None and bool(excinfo.errisinstance(pytest.skip.Exception))
    )


def run_keywords() -> list[str]:
    """The keyword arguments of :func:`pytest_rseq.run`, the marker's allow-list."""
    import inspect

    from ..engine.runner import run

    return list(inspect.signature(run).parameters)


@pytest.fixture
def rseq_capabilities() -> dict[str, Any]:
    """The machine's rseq fingerprint (see ``pytest_rseq.capabilities``)."""
    from ..host.capabilities import capabilities

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


def _run_with_progress(config: pytest.Config, spec: RunSpec) -> StressResult:
    __tracebackhide__ = _hide_plugin_frame
    from ..engine.runner import run_spec
    from .progress import LIVE_AFTER_S, LiveLine

    expected = deadlines(spec).expected
    emitter = _live_emitter(config) if expected >= LIVE_AFTER_S else None
    if emitter is None:
        return run_spec(spec)
    label = f"{spec.workload.name} {spec.path}"
    with LiveLine(emitter[0], label, expected, tty=emitter[1]):
        return run_spec(spec)


def _mutation(config: pytest.Config, spec: RunSpec, original: StressResult) -> dict[str, Any]:
    """The ``mutation`` record of a call: its mutants run with the original's settings."""
    skipped = ""
    if not original.ok:
        skipped = f"the original run is {original.verdict!r}, not ok"
    elif original.path == "fallback":
        skipped = "the call ran the fallback path only: its rseq sections never ran"
    if skipped:
        return {
            "score": "not run",
            "killed": 0,
            "made": 0,
            "mutants": [],
            "not_made": [],
            "skipped": skipped,
        }
    return mutation.run_mutants(spec, lambda mutant: _run_with_progress(config, mutant))


def _call_spec(
    state: State,
    marker: dict[str, Any],
    workload: Any,
    kwargs: dict[str, Any],
    nodeid: str,
    index: int,
) -> tuple[RunSpec, bool]:
    """The spec of one ``rseq_stress()`` call (options, then the marker, then the call;
    the seed derived when none is given) and whether to mutation-test it."""
    __tracebackhide__ = _hide_plugin_frame
    unknown = sorted(set(kwargs) - set(run_keywords()) - set(MARKER_ONLY_KEYWORDS))
    if unknown:
        raise TypeError(f"rseq_stress() got unexpected keyword(s) {', '.join(unknown)}")
    mutate = {**marker, **kwargs}.get("mutate")
    if mutate is None:
        mutate = state.settings.mutate
    if not isinstance(mutate, bool):
        raise TypeError(f"rseq_stress(): mutate must be True or False, got {mutate!r}")
    call = {k: v for k, v in kwargs.items() if k not in MARKER_ONLY_KEYWORDS}
    if workload is not None:
        call["workload"] = workload
    spec = RunSpec.from_layers(
        state.settings.run_defaults(),
        {k: v for k, v in marker.items() if k not in MARKER_ONLY_KEYWORDS},
        call,
        default_seed=seeds.derive(state.seed, nodeid, index),
    )
    if state.settings.smoke:
        spec = replace(spec, duration=min(spec.duration, options.SMOKE_DURATION_S))
    return spec, mutate


@pytest.fixture
def rseq_stress(request: pytest.FixtureRequest) -> Callable[..., StressResult]:
    """A callable with ``pytest_rseq.run``'s signature, defaulted from options and the marker.

    Defaults, weakest first: the ``--rseq-*`` options (and ``rseq_*`` ini keys),
    ``@pytest.mark.rseq(...)`` (closest marker wins), the call's own keywords.
    A run without an explicit seed gets one derived from the session seed and
    the node id. A run the machine cannot do (``CapabilityMissing``) skips the
    test with the reason.
    """
    from ..errors import CapabilityMissing

    config = request.config
    state = config.stash[STATE]
    item = request.node
    marker: dict[str, Any] = {}
    for mark in reversed(list(item.iter_markers("rseq"))):
        marker.update(mark.kwargs)
    rows = item.stash.setdefault(ROWS, [])

    def stress(workload: Any = None, **kwargs: Any) -> StressResult:
        __tracebackhide__ = _hide_plugin_frame
        index = len(rows)
        spec, mutate = _call_spec(state, marker, workload, kwargs, item.nodeid, index)
        if spec.chaos.hotplug_hz > 0 and not state.settings.allow_hotplug:
            pytest.skip("CPU hotplug chaos (hotplug_hz > 0) needs --rseq-allow-hotplug")
        library = spec.workload.library
        if state.settings.lint and library:
            from ..elf.lint import check_library

            check_library(library)
        try:
            result = _run_with_progress(config, spec)
        except CapabilityMissing as exc:
            pytest.skip(f"rseq capability missing: {exc}")
        fp = report.host_fingerprint()
        row = make_row(
            result, test=item.nodeid, index=index, worker=state.worker, host=report.host_id(fp)
        )
        if mutate and library:
            row["mutation"] = _mutation(config, spec, result)
            item.stash.setdefault(MUTATION_FAILURES, []).extend(
                mutation.failures(result, row["mutation"])
            )
        rows.append(row)
        return result

    return stress
