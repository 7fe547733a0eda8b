"""``--rseq-mutate``: a stress call on each mutant of its library, scored and explained.

A mutant is *killed* when its run shows a bug (verdict ``bug``: a crash, lost
or invented counts, a broken invariant), *survived* when its run is ``ok``,
and *inconclusive* when its run ends ``no-evidence`` or ``error``: neither
proves anything, so only kills count. The row of the original run carries a
``mutation`` record; the summary prints it (``mutation_lines``).

Each mutant runs *aimed* (``RunSpec.aim``, ``native/aim.h``): every worker
gets a hardware breakpoint on the instruction where the mutant's bug window
is, and a hit there perturbs the thread with the causes the call's chaos
already uses (a move to another CPU, a pause that lets a thread sharing the
CPU run), so a one-instruction window is reached in a short run. The same
breakpoints on the original library lie inside its sections, where a hit
only aborts the section: the *aimed original* runs (one per four aim
addresses, made when an armed mutant run was killed) check that, and a call
whose aimed original shows a bug or an error fails, since its kills would
then prove nothing.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from ..engine.chaos import Chaos
from ..engine.result import StressResult
from ..engine.spec import RunSpec

Runner = Callable[[RunSpec], StressResult]


def outcome(result: StressResult) -> str:
    """``killed``, ``survived`` or ``inconclusive`` for a mutant's run."""
    if result.verdict == "bug":
        return "killed"
    return "survived" if result.verdict == "ok" else "inconclusive"


def aim_problem(result: StressResult) -> str | None:
    """Why the aimed run's breakpoints were not (all) set, or None when every worker had them."""
    err = int(result.counters.get("aim_errno", 0))
    if not err:
        return None
    name = errno.errorcode.get(err, str(err))
    how = "no worker" if not result.counters.get("aim_threads", 0) else "some workers"
    return (
        f"{how} could set the aim breakpoints ({name}: {os.strerror(err)}; perf_event_open "
        "breakpoints need Linux >= 5.13, perf_event_paranoid <= 2 and no seccomp filter "
        "refusing perf_event_open)"
    )


def hint(kind: str, result: StressResult, chaos: Chaos) -> str:
    """What might kill a survivor of class ``kind``, from what its run did and did not show."""
    tips: list[str] = []
    unaimed = aim_problem(result)
    hits = int(result.counters.get("aim_hits", 0))
    if unaimed:
        tips.append(f"an aimed run: {unaimed}")
    migrates = chaos.affinity_hz > 0 or chaos.cpuset_hz > 0 or chaos.hotplug_hz > 0
    if kind == "bad-signature" and result.aborts == 0:
        tips.append("an abort: signals (signals_hz) or preemption inside the section")
    if kind != "bad-signature" and result.threads <= 1:
        tips.append("a second thread (threads=1 here: nothing races the section)")
    if kind in ("unprotected", "commit-outside") and float(chaos.oversubscribe) < 2:
        tips.append("threads that share a CPU and preempt each other (oversubscribe=2)")
    if kind != "bad-signature" and not migrates:
        tips.append(
            "migrations (affinity_hz): a thread that resumes on its own CPU re-reads the "
            "shard, so only a move between the CPU check and the commit races the old CPU"
        )
    elif kind != "bad-signature" and (unaimed or not hits):
        tips.append(f"more migrations (affinity_hz above {float(chaos.affinity_hz):g})")
    if unaimed or not hits:
        tips.append(f"a longer duration (this run: {result.duration_s:.2f} s)")
    if not tips:
        tips.append(
            f"a stronger check: the run perturbed the window {hits} times with every cause "
            "it asks for, and its oracle saw nothing wrong"
        )
    return "; ".join(tips)


def _why(entry: dict[str, Any]) -> str:
    """The first reason of an inconclusive run, shortened for a summary line."""
    first = entry["reasons"][0] if entry.get("reasons") else str(entry.get("verdict"))
    return first if len(first) <= 160 else first[:157] + "..."


def _aim_fields(result: StressResult) -> dict[str, Any]:
    """What an aimed run's breakpoints did (the ``aim_*`` counters), for the record."""
    fields = {
        name: int(result.counters.get(f"aim_{name}", 0))
        for name in ("threads", "hits", "moves", "yields")
    }
    problem = aim_problem(result)
    return {"aim": fields, **({"aim_problem": problem} if problem else {})}


def aimed_originals(spec: RunSpec, aims: Sequence[int], runner: Runner) -> list[dict[str, Any]]:
    """The original library run with the mutants' aim addresses (``MAX_AIM`` a run).

    Every address lies inside one of its sections, so a hit only aborts a
    section: a run that shows a bug (or an error) there means the mutants'
    kills prove nothing (:func:`failures` says so); ``no-evidence`` is no
    false alarm.
    """
    from ..engine.spec import MAX_AIM

    addresses = sorted(set(aims))
    runs: list[dict[str, Any]] = []
    for i in range(0, len(addresses), MAX_AIM):
        chunk = tuple(addresses[i : i + MAX_AIM])
        result = runner(dataclasses.replace(spec, aim=chunk))
        runs.append(
            {
                "addresses": [f"{a:#x}" for a in chunk],
                "verdict": result.verdict,
                "seed": result.seed,
                "reasons": list(result.reasons),
                **_aim_fields(result),
            }
        )
    return runs


def run_mutants(spec: RunSpec, runner: Runner) -> dict[str, Any]:
    """Run ``runner`` on ``spec`` with each mutant of its workload's library in its place.

    Each mutant's run is aimed at its window (``Mutant.aim``); the original
    then runs aimed at every mutant's address (:func:`aimed_originals`).

    Returns the JSON-safe ``mutation`` record: ``score`` (``"killed 3/4"``),
    ``killed``, ``made``, one entry per mutant run (``mutants``), one per
    mutant that could not be made (``not_made``, with the reason) and the
    aimed original runs (``aimed_original``).
    """
    from .mutants import mutants

    workload = spec.workload
    assert workload.library is not None
    runs: list[dict[str, Any]] = []
    not_made: list[dict[str, Any]] = []
    aims: list[int] = []
    with tempfile.TemporaryDirectory(prefix="rseq-mutants-") as tmp:
        for m in mutants(workload.library, tmp, symbol=workload.symbol):
            entry: dict[str, Any] = {
                "name": m.name,
                "kind": m.kind,
                "descriptor": m.descriptor,
                "function": m.function,
            }
            if m.path is None:
                not_made.append({**entry, "reason": m.reason})
                continue
            mutant = dataclasses.replace(workload, library=str(m.path))
            result = runner(dataclasses.replace(spec, workload=mutant, aim=m.aim))
            entry.update(
                change=m.change,
                address=[f"{a:#x}" for a in m.aim],
                outcome=outcome(result),
                verdict=result.verdict,
                crash=result.crash,
                lost=result.expected - result.observed,
                aborts=result.aborts,
                migrations=result.migrations,
                seed=result.seed,
                reasons=list(result.reasons),
                **_aim_fields(result),
            )
            if entry["outcome"] == "survived":
                entry["hint"] = hint(m.kind, result, spec.chaos)
            runs.append(entry)
            aims.extend(m.aim)
    killed = sum(1 for r in runs if r["outcome"] == "killed")
    armed_kill = any(r["outcome"] == "killed" and r["aim"]["threads"] for r in runs)
    return {
        "score": f"killed {killed}/{len(runs)}",
        "killed": killed,
        "made": len(runs),
        "mutants": runs,
        "not_made": not_made,
        # Only when a kill came from an armed run: else the control proves nothing.
        "aimed_original": aimed_originals(spec, aims, runner) if armed_kill else [],
    }


def failures(original: StressResult, record: dict[str, Any]) -> list[str]:
    """Why a mutation-tested call fails its test (empty: original ok, every mutant killed)."""
    problems: list[str] = []
    if original.ok and record.get("skipped"):
        return problems  # nothing to judge: the rseq path did not run
    if not original.ok:
        problems.append(f"the original run is {original.verdict!r}, not ok: mutants not judged")
    if original.ok and record.get("made", 0) == 0:
        problems.append("no mutant could be made, so nothing shows the test has teeth")
    for control in record.get("aimed_original", []):
        # A false alarm, not a lack of evidence: only a bug or an error voids the kills.
        if control["verdict"] in ("bug", "error"):
            problems.append(
                f"the original aimed at {', '.join(control['addresses'])} is "
                f"{control['verdict']!r}, not ok, so the kills prove nothing: "
                + "; ".join(control["reasons"][:2])
            )
    for r in record.get("mutants", []):
        if r["outcome"] == "survived":
            problems.append(
                f"mutant {r['name']} survived ({r['change']}); might kill it: {r['hint']}"
            )
        elif r["outcome"] == "inconclusive":
            why = _why(r)
            problems.append(f"mutant {r['name']} inconclusive ({r['verdict']}: {why})")
    return problems


def mutation_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The summary's mutation block: a score per test call, each survivor and why."""
    lines: list[str] = []
    for row in rows:
        record = row.get("mutation")
        if not isinstance(record, dict):
            continue
        counts = {o: 0 for o in ("survived", "inconclusive")}
        for r in record.get("mutants", []):
            if r["outcome"] in counts:
                counts[r["outcome"]] += 1
        extra = "".join(f", {n} {o}" for o, n in counts.items() if n)
        if record.get("not_made"):
            extra += f", {len(record['not_made'])} not made"
        lines.append(f"  {row.get('test')} [{row.get('workload')}]: {record['score']}{extra}")
        for r in record.get("mutants", []):
            if r["outcome"] == "survived":
                lines.append(f"    survived {r['name']}: might kill it: {r['hint']}")
            elif r["outcome"] == "inconclusive":
                why = _why(r)
                lines.append(f"    inconclusive {r['name']}: {r['verdict']} ({why})")
        for r in record.get("not_made", []):
            lines.append(f"    not made {r['name']}: {r['reason']}")
        problem = next(
            (r["aim_problem"] for r in record.get("mutants", []) if "aim_problem" in r), None
        )
        if problem:
            lines.append(f"    unaimed: {problem}")
        for control in record.get("aimed_original", []):
            if control["verdict"] in ("bug", "error"):
                where = ", ".join(control["addresses"])
                lines.append(f"    the original aimed at {where}: {control['verdict']}")
        if record.get("skipped"):
            lines.append(f"    mutants not run: {record['skipped']}")
    return ["rseq mutation (killed = the mutant's run showed a bug):", *lines] if lines else []
