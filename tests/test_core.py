"""The foundation: built-in counters on both paths, the oracle, canaries, isolation."""

from __future__ import annotations

import dataclasses
import math
import os

import pytest

import pytest_rseq
from pytest_rseq import Chaos, ConsistencyError, Workload, run


@pytest.mark.parametrize("path", ["rseq", "fallback", "both"])
def test_counter_matches_fallback_total(path: str) -> None:
    result = run("counter", threads=4, duration=0.5, path=path)
    result.assert_consistent()
    assert result.ok
    assert result.observed == result.expected > 0
    assert result.registration == "glibc"
    assert result.path == path
    assert sum(result.per_cpu) == result.observed
    if path == "both":
        assert result.details["fallback"]["observed"] == result.observed


def test_counter_mm_cid_is_consistent() -> None:
    result = run("counter_mm_cid", threads=4, duration=0.3)
    result.assert_consistent()
    assert result.path == "rseq" and result.observed > 0


def test_racy_canary_is_caught_every_time() -> None:
    # The canary has no rseq section, so it never aborts: with the evidence
    # extension every run would go on to its cap. The loss is what counts here.
    # Five runs: the 20-run catch rate of these same runs (Chaos.default(), four
    # threads on two CPUs) is test_chaos.py's test_default_catches_canary_racy_20_of_20.
    failures = []
    for _ in range(5):
        result = run("canary_racy", threads=4, duration=0.3, evidence_cap=1)
        assert not result.ok, result.describe()
        assert result.observed < result.expected
        failures.append(result)
    with pytest.raises(ConsistencyError) as info:
        failures[0].assert_consistent()
    message = str(info.value)
    assert str(failures[0].expected) in message
    assert str(failures[0].observed) in message
    assert f"seed={failures[0].seed}" in message
    assert "repro: python -c" in message


def test_bad_signature_canary_crashes_only_the_child() -> None:
    # threads > CPUs: preemption inside the (widened) section is the abort source.
    result = run("canary_bad_signature", threads=4, duration=2.0)
    assert result.crash == "SIGSEGV"
    assert not result.ok
    assert "SIGSEGV" in result.describe()
    # We are still here, and the next run works.
    assert run("counter", threads=2, duration=0.1).ok


def test_in_process_run_is_consistent() -> None:
    result = run("counter", threads=2, duration=0.2, isolate=False)
    result.assert_consistent()


def test_op_budget_stops_each_thread_exactly() -> None:
    result = run("counter", threads=3, ops_per_thread=10_000, duration=30)
    # 10,000 ops take microseconds: the budget ends the run, with or without evidence.
    assert result.verdict in ("ok", "no-evidence"), result.describe()
    if result.verdict == "no-evidence":
        assert any("ops_per_thread" in r for r in result.reasons), result.reasons
    assert result.ops == result.observed == 30_000
    assert result.details["slot_ops"] == [10_000] * 3


def test_result_is_json_safe_and_carries_the_seed() -> None:
    import json

    result = run("counter", threads=2, duration=0.1, seed=1234)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["seed"] == 1234
    assert data["ok"] is True
    assert "seed=1234" in result.repro


def test_repro_line_repeats_the_failure() -> None:
    result = run("canary_racy", threads=4, duration=0.5, seed=99)
    assert not result.ok
    code = result.repro.split('python -c "', 1)[1].rstrip('"')
    with pytest.raises(ConsistencyError, match="seed=99"):
        exec(code, {})


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"workload": "no_such_workload"}, "no_such_workload"),
        ({"workload": 42}, "42"),
        ({"threads": 0}, "threads"),
        ({"threads": -3}, "-3"),
        ({"threads": 10**6}, "1000000"),
        ({"threads": 2.5}, "2.5"),
        ({"threads": True}, "True"),
        ({"duration": -1.0}, "-1.0"),
        ({"duration": math.nan}, "nan"),
        ({"duration": math.inf}, "inf"),
        ({"duration": 0}, "duration"),
        ({"duration": "1"}, "'1'"),
        ({"ops_per_thread": 0}, "ops_per_thread"),
        ({"path": "fast"}, "'fast'"),
        ({"registration": "mine"}, "'mine'"),
        ({"seed": -1}, "seed"),
        ({"chaos": "default"}, "'default'"),
        ({"isolate": None}, "None"),
    ],
)
def test_bad_input_is_a_value_error_naming_the_value(kwargs: dict, named: str) -> None:
    args = {"workload": "counter", "duration": 0.1, **kwargs}
    workload = args.pop("workload")
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(".", r"\.")):
        run(workload, **args)


def test_in_process_rejects_registration_changes() -> None:
    with pytest.raises(ValueError, match="'own'"):
        run("counter", duration=0.1, registration="own", isolate=False)


def test_unknown_builtin_via_workload_class() -> None:
    with pytest.raises(ValueError, match="'nope'"):
        Workload.builtin("nope")


def test_default_threads_follow_oversubscription() -> None:
    cpus = len(os.sched_getaffinity(0))
    result = run("counter", duration=0.1, chaos=Chaos(oversubscribe=2.0))
    assert result.threads == 2 * cpus


def test_get_include_holds_the_header() -> None:
    header = os.path.join(pytest_rseq.get_include(), "pytest_rseq.h")
    with open(header) as fh:
        text = fh.read()
    assert "#define PRSEQ_ABI_VERSION 2" in text
    assert "struct prseq_workload" in text


def test_repro_line_keeps_library_options() -> None:
    from pytest_rseq.engine.oracle import repro_line
    from pytest_rseq.engine.spec import RunSpec

    spec = RunSpec.build(
        "counter",
        threads=2,
        duration=0.1,
        registration="own",
        seed=7,
    )
    wl = Workload(
        name="lib.so:w", library="/x/lib.so", symbol="w", preload=True, registers_itself=True
    )
    spec = dataclasses.replace(spec, workload=wl)
    line = repro_line(spec)
    assert "Workload.from_library('/x/lib.so', 'w', preload=True, registers_itself=True)" in line
    assert "registration='own'" in line and "seed=7" in line
