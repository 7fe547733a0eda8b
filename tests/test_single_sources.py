"""One source per concept: the run spec, the result counters (from the C struct), the
injector registry (against Chaos, the native counters and the docs' table)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from cffi import FFI

from pytest_rseq import Chaos, StressResult, Workload
from pytest_rseq._native import load
from pytest_rseq.engine.counters import Counters, counter_names, struct_counters
from pytest_rseq.engine.deadlines import (
    FALLBACK_ATTEMPTS,
    deadlines,
    fallback_deadline,
    stall_allowance_s,
)
from pytest_rseq.engine.evidence import EVIDENCE_BITS
from pytest_rseq.engine.injectors import BY_FIELD, INJECTORS
from pytest_rseq.engine.result import COUNTER_ATTRIBUTES
from pytest_rseq.engine.spec import SEED_MAX, ChildOrder, RunSpec
from pytest_rseq.host.prep import HostPrep
from pytest_rseq.plugin import options
from pytest_rseq.plugin.rows import ROW_FIELDS, make_row

DOCS = Path(__file__).resolve().parent.parent / "docs"

# ---- counters ------------------------------------------------------------------------


def test_counters_are_the_integer_fields_of_the_c_struct() -> None:
    ffi = FFI()
    ffi.cdef(
        """
        struct prseq_result {
            int error; char errmsg[8]; int path; int owner; uint32_t threads;
            uint64_t ops; uint64_t new_counter; int cpuset_errno; uint64_t slot_ops[4];
            uint32_t nr_shards; double duration_s;
        };
        """
    )
    # A field added in C is a counter with no Python list to extend.
    assert struct_counters(ffi) == ("threads", "ops", "new_counter", "cpuset_errno")


def test_the_native_counters_reach_the_result_rows_and_json() -> None:
    names = counter_names()
    assert set(COUNTER_ATTRIBUTES) <= set(names)
    assert {"aborts", "invariant_samples", "evidence_moves", "signals_sent"} <= set(names)
    result = pytest_rseq_run()
    assert set(result.counters) == set(names)
    assert all(result.counters[n] == getattr(result, n) for n in COUNTER_ATTRIBUTES)
    assert result.counters.aborts == result.aborts
    row = make_row(result, test="t", index=0, worker="main", host="h")
    assert set(row["counters"]) == set(names) and json.loads(json.dumps(row)) == row
    assert {*COUNTER_ATTRIBUTES, "counters", "verdict", "ops_per_s"} <= set(ROW_FIELDS)


def pytest_rseq_run() -> StressResult:
    from pytest_rseq import run

    return run("counter", threads=2, duration=0.05, chaos=Chaos.none(), isolate=False, seed=3)


def test_a_hand_built_result_has_its_counters() -> None:
    result = StressResult(
        ok=True, workload="counter", path="rseq", registration="glibc", threads=2, expected=4,
        observed=4, per_cpu=[4], ops=4, aborts=1, migrations=0, signals_delivered=0,
        affinity_changes=0, cpuset_shifts=0, threads_started=2, forks=0, membarriers=0,
        invariant_violations=0, crash=None, seed=1, duration_s=0.1,
    )  # fmt: skip
    assert result.counters == {n: getattr(result, n) for n in COUNTER_ATTRIBUTES}
    assert isinstance(result.counters, Counters) and type(result.to_dict()["counters"]) is dict


# ---- injectors -----------------------------------------------------------------------


def test_the_registry_is_chaos_and_the_native_counters() -> None:
    rates = {f.name for f in dataclasses.fields(Chaos) if f.name.endswith("_hz")}
    assert rates == set(BY_FIELD)
    for inj in INJECTORS:
        with pytest.raises(ValueError, match=f"{inj.field}.*above the limit"):
            Chaos(**{inj.field: inj.limit * 2})
        assert inj.counter in counter_names() and set(inj.proof) <= set(counter_names())
        assert inj.counter == inj.proof[0]
        assert inj.evidence is None or inj.evidence in EVIDENCE_BITS
    config = {name for name, _ in load()[0].typeof("struct prseq_config").fields}
    assert set(BY_FIELD) <= config, "every injector's rate is a struct prseq_config field"


def test_the_docs_injector_table_is_the_registry() -> None:
    text = (DOCS / "chaos.md").read_text()
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `(\w+)` \| .*? \| (.*?) \| .*? \|$", text, flags=re.M)
    }
    for inj in INJECTORS:
        assert inj.field in rows, f"docs/chaos.md has no row for {inj.field}"
        assert f"{inj.counter}" in rows[inj.field], f"{inj.field}: counted as {inj.counter}"
    fields = {f.name for f in dataclasses.fields(Chaos)}
    assert fields <= set(rows), f"fields missing from the table: {fields - set(rows)}"


def test_the_effect_of_churn_leaves_out_the_first_thread_of_each_slot() -> None:
    assert BY_FIELD["churn_hz"].effect({"threads_started": 7}, threads=4) == 3
    assert BY_FIELD["fork_hz"].effect({"forks": 5}, threads=4) == 5


# ---- the run spec ----------------------------------------------------------------------


def spec(**kw: object) -> RunSpec:
    return RunSpec.build("counter", **{"threads": 2, "seed": 5, **kw})  # type: ignore[arg-type]


def test_the_spec_round_trips_through_json() -> None:
    lib = Workload(name="lib.so:w", library="/x/lib.so", symbol="w", preload=True)
    original = dataclasses.replace(spec(path="both", evidence_cap=3), workload=lib)
    order = ChildOrder(original, HostPrep(hotplug_cpus=(1,), node_root="/n"), "/tmp/r.json")
    assert ChildOrder.from_json(json.loads(json.dumps(order.to_json()))) == order


def test_layers_merge_options_then_marker_then_call() -> None:
    got = RunSpec.from_layers(
        {"duration": 2.0, "threads": 3}, {"duration": 0.5, "path": "both"}, {"threads": 1},
        default_seed=9,
    )  # fmt: skip
    assert (got.duration, got.threads, got.path, got.seed) == (0.5, 1, "both", 9)
    assert RunSpec.from_layers({"seed": 4}, default_seed=9).seed == 4
    with pytest.raises(TypeError, match="nonsense"):
        RunSpec.from_layers({"nonsense": 1})


def test_a_replaced_spec_is_validated_again() -> None:
    with pytest.raises(ValueError, match="threads must be between 1 and 1024, got 0"):
        dataclasses.replace(spec(), threads=0)
    with pytest.raises(ValueError, match="registration='own' needs isolate=True"):
        dataclasses.replace(spec(registration="own"), isolate=False)


def test_one_seed_bound_for_run_and_the_option() -> None:
    assert spec(seed=SEED_MAX).seed == SEED_MAX
    with pytest.raises(ValueError, match="seed must be between"):
        spec(seed=SEED_MAX + 1)
    assert options._parse_seed(str(SEED_MAX), "--rseq-seed") == (SEED_MAX, False)
    with pytest.raises(pytest.UsageError, match="seed must be between"):
        options._parse_seed(str(SEED_MAX + 1), "--rseq-seed")


def test_every_deadline_comes_from_one_function() -> None:
    one = deadlines(spec(duration=2.0, evidence_cap=3))
    assert one.first_half == 6.0 and one.fallback_half == 0 and one.expected == 2.0
    assert one.child > one.first_half
    both = deadlines(spec(duration=2.0, evidence_cap=3, path="both"))
    # The rseq half may run up to its cap plus the stall allowance.
    assert both.fallback_half == fallback_deadline(6.0 + stall_allowance_s()) == 330.0
    # The child outlives every half it may run, each retry of the fallback half included.
    assert both.child > both.first_half + FALLBACK_ATTEMPTS * both.fallback_half
    assert both.expected == 4.0
