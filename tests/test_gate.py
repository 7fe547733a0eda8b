"""The environment gate: the real gate on this machine, and its verdict rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_rseq import gate
from pytest_rseq.engine.result import StressResult
from pytest_rseq.gate import (
    FAIL,
    NOT_TESTED,
    OFF,
    PASS,
    SKIP,
    Outcome,
    Scenario,
    judge,
    overall,
)

GATE_TIMEOUT_S = 120


def run_gate(tmp_path: Path, *args: str) -> tuple[int, dict[str, object], str]:
    out = tmp_path / "gate.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_rseq", "--quick", "--json", str(out), *args],
        capture_output=True,
        text=True,
        timeout=GATE_TIMEOUT_S,
    )
    return proc.returncode, json.loads(out.read_text()), proc.stdout + proc.stderr


def scenario_names() -> set[str]:
    return {s.name for s in gate.scenarios(2)}


def test_gate_passes_here_with_every_scenario_and_caught_canaries(tmp_path: Path) -> None:
    code, doc, out = run_gate(tmp_path)
    verdicts = {s["name"]: s["verdict"] for s in doc["scenarios"]}  # type: ignore[union-attr]
    assert set(verdicts) == scenario_names()
    assert code == 0 == doc["exit_code"], out
    assert verdicts.pop("injector/hotplug") == OFF  # opt-in: takes a CPU offline
    details = {s["name"]: s["detail"] for s in doc["scenarios"]}  # type: ignore[union-attr]
    for extra in {s.name for s in gate.scenarios(2) if s.extra} - {"injector/hotplug"}:
        # Root (cpuset) or perf and a readable tracefs: NOT TESTED says which is missing.
        if verdicts[extra] == NOT_TESTED:
            assert "uid" in details[extra] or "perf" in details[extra], out
            del verdicts[extra]
    if os.geteuid() != 0:
        assert "injector/cpuset" not in verdicts and "perf/ip-fixup" not in verdicts, out
        assert "COULD NOT TEST" not in out and "not tested (" in out
    assert set(verdicts.values()) == {PASS}, out
    canaries = [s for s in doc["scenarios"] if s["name"].startswith("canary/")]  # type: ignore[union-attr]
    assert len(canaries) == 5 and all(c["detail"].startswith("caught") for c in canaries)
    assert "gate: PASS" in out and "area owner glibc" in out


@pytest.mark.parametrize("errno_name", ["ENOSYS"])
def test_gate_with_rseq_blocked_before_exec_reports_unavailable(
    tmp_path: Path, errno_name: str
) -> None:
    code, doc, out = run_gate(tmp_path, "--block-rseq", errno_name)
    assert doc["blocked_before_exec"] == errno_name
    assert doc["rseq_available"] is False
    assert doc["fingerprint"]["owner"] == "none"  # type: ignore[index]
    verdicts = {s["name"]: s["verdict"] for s in doc["scenarios"]}  # type: ignore[union-attr]
    assert set(verdicts) == scenario_names()
    assert FAIL not in verdicts.values(), out
    for fallback in ("registration/blocked-enosys", "registration/blocked-eperm", "path/fallback"):
        assert verdicts[fallback] == PASS, out
    assert verdicts["canary/racy"] == SKIP
    assert code == gate.EXIT_COULD_NOT_TEST, out
    assert "rseq is UNAVAILABLE here (the syscall fails with ENOSYS)" in out
    assert "COULD NOT TEST: rseq is unavailable here; the fallback path passed" in out


def _result(**kw: object) -> StressResult:
    base: dict[str, object] = dict(
        ok=True, workload="counter", path="rseq", registration="glibc", threads=2,
        expected=10, observed=10, per_cpu=[10], ops=10, aborts=1, migrations=1,
        signals_delivered=1, affinity_changes=0, cpuset_shifts=0, threads_started=2, forks=0,
        membarriers=0, invariant_violations=0, crash=None, seed=1, duration_s=0.1,
    )  # fmt: skip
    base.update(kw)
    return StressResult(**base)  # type: ignore[arg-type]


def test_judge_needs_evidence_and_catches_missed_canaries() -> None:
    signals = Scenario("injector/signals", "x", proof=("signals_delivered", "aborts"))
    assert judge(signals, _result(), True)[0] == PASS
    verdict, why = judge(signals, _result(aborts=0), True)
    assert verdict == FAIL and "aborts = 0" in why
    assert judge(signals, _result(ok=False, reasons=["lost 3"]), True) == (FAIL, "lost 3")
    assert judge(signals, _result(path="fallback"), False)[0] == SKIP

    racy = Scenario("canary/racy", "x", workload="canary_racy", expect="lost")
    assert judge(racy, _result(ok=False, observed=4), True)[0] == PASS
    verdict, why = judge(racy, _result(), True)
    assert verdict == FAIL and "MISSED" in why
    bad_sig = Scenario("canary/bad-signature", "x", expect="SIGSEGV")
    assert judge(bad_sig, _result(ok=False, crash="SIGSEGV"), True)[0] == PASS
    assert judge(bad_sig, _result(ok=False, crash="SIGBUS"), True)[0] == FAIL

    blocked = Scenario("registration/blocked-enosys", "x", expect="fallback")
    assert judge(blocked, _result(path="fallback"), True)[0] == PASS
    assert judge(blocked, _result(path="rseq"), True)[0] == FAIL


def test_overall_fails_closed() -> None:
    def outcomes(*verdicts: str) -> list[Outcome]:
        return [Outcome(f"g/{i}", "x", v, "") for i, v in enumerate(verdicts)]

    assert overall(outcomes(PASS, PASS, OFF))[0] == gate.EXIT_PASS
    assert overall(outcomes(PASS, NOT_TESTED))[0] == gate.EXIT_PASS
    assert overall(outcomes(PASS, NOT_TESTED), required=["g/1"])[0] == gate.EXIT_COULD_NOT_TEST
    assert overall(outcomes(PASS, OFF), required=["g/1"])[0] == gate.EXIT_COULD_NOT_TEST
    assert overall(outcomes(PASS), required=["g/9"])[0] == gate.EXIT_COULD_NOT_TEST
    assert overall(outcomes(PASS, PASS), required=["g/1"])[0] == gate.EXIT_PASS
    assert overall(outcomes(NOT_TESTED))[0] == gate.EXIT_COULD_NOT_TEST
    assert overall(outcomes(PASS, SKIP))[0] == gate.EXIT_COULD_NOT_TEST
    assert overall(outcomes(OFF))[0] == gate.EXIT_COULD_NOT_TEST
    assert overall(outcomes())[0] == gate.EXIT_COULD_NOT_TEST
    assert overall(outcomes(PASS, SKIP, FAIL))[0] == gate.EXIT_FAIL
    assert overall(outcomes(PASS, PASS), rseq_available=False)[0] == gate.EXIT_COULD_NOT_TEST
    missed = [Outcome("canary/racy", "x", FAIL, "MISSED"), Outcome("a/b", "x", PASS, "")]
    code, text = overall(missed)
    assert code == gate.EXIT_FAIL and "gate itself is broken: canary/racy" in text


REQUIRED = {
    *(f"registration/{m}" for m in ("auto", "glibc", "own", "blocked-enosys", "blocked-eperm")),
    *(f"injector/{i}" for i in ("signals", "affinity", "cpuset", "churn", "fork", "membarrier")),
    "injector/hotplug",
    "path/both-counter",
    "path/both-mm_cid",
    "path/fallback",
    "invariants/migration",
    "seccomp/after-start-enosys",
    "seccomp/after-start-eperm",
    "seccomp/after-start-enosys-own",
    "canary/racy",
    "canary/exit-loss",
    "canary/stale-cpu",
    "canary/bad-signature",
}


def test_suite_covers_every_mode_injector_and_canary() -> None:
    assert scenario_names() >= REQUIRED
    from pytest_rseq.engine.chaos import Chaos

    injectors = {n.removesuffix("_hz") for n in Chaos.__dataclass_fields__ if n.endswith("_hz")}
    assert {f"injector/{i}" for i in injectors} <= scenario_names()


def test_list_names_every_scenario() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_rseq", "--list"], capture_output=True, text=True, check=True
    )
    listed = {line.split()[0] for line in proc.stdout.splitlines()}
    assert listed == {s.name for s in gate.scenarios(len(__import__("os").sched_getaffinity(0)))}


def test_a_bad_command_line_is_not_could_not_test() -> None:
    """argparse's own exit 2 would read as "could not test"; abbreviations are refused
    (an abbreviated --block once re-executed the gate forever)."""
    for argv in (["--bogus"], ["--block=ENOSYS", "--list"]):
        proc = subprocess.run(
            [sys.executable, "-m", "pytest_rseq", *argv], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 64, proc.stderr
        assert "error" in proc.stderr


def test_real_time_signal_names() -> None:
    import signal

    from pytest_rseq.engine.child_process import signal_name

    assert signal_name(signal.SIGSEGV) == "SIGSEGV"
    assert signal_name(signal.SIGRTMIN + 4) == "SIGRTMIN+4"


def _scripted_runs(
    monkeypatch: pytest.MonkeyPatch, results: list[StressResult]
) -> list[int | None]:
    """Make the gate's runs return ``results`` in turn; the returned list gets their seeds."""
    from pytest_rseq.engine import runner

    seeds: list[int | None] = []

    def scripted(workload: object, *, seed: int | None = None, **kw: object) -> StressResult:
        seeds.append(seed)
        return results[len(seeds) - 1]

    monkeypatch.setattr(runner, "run", scripted)
    return seeds


def test_a_canary_that_loses_counts_gets_three_runs_before_it_is_missed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A loss the workers must be on the CPU for can escape one short run on a loaded
    machine; a gate blind to the bug misses it in all three runs, and then FAILs."""
    fp = {"rseq_available": True, "mm_cid_usable": True}
    racy = next(s for s in gate.scenarios(2) if s.name == "canary/racy")
    missed, caught = _result(), _result(ok=False, observed=4)

    seeds = _scripted_runs(monkeypatch, [missed, caught])
    outcome = gate.run_scenario(racy, fp, duration=0.25, seed=7)
    assert outcome.verdict == PASS and outcome.detail.startswith("caught"), outcome
    assert "(run 2 of at most 3)" in outcome.detail and seeds == [7, 8]

    seeds = _scripted_runs(monkeypatch, [missed] * 3)
    outcome = gate.run_scenario(racy, fp, duration=0.25, seed=None)
    assert outcome.verdict == FAIL and "canary MISSED" in outcome.detail, outcome
    assert seeds == [None] * 3

    # Other scenarios, and a canary run that broke, get one run.
    seeds = _scripted_runs(monkeypatch, [_result(ok=False, error="op failed"), caught])
    assert gate.run_scenario(racy, fp, duration=0.25, seed=1).verdict == FAIL
    assert seeds == [1]
    auto = next(s for s in gate.scenarios(2) if s.name == "registration/auto")
    seeds = _scripted_runs(monkeypatch, [_result(ok=False, reasons=["lost 3"]), _result()])
    assert gate.run_scenario(auto, fp, duration=0.25, seed=1).verdict == FAIL
    assert seeds == [1]
