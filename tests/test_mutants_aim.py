"""Aimed mutant runs: where each mutant's breakpoint goes, that a breakpoint hit in a
correct section is a signal abort and nothing else, that an aimed run kills the
one-instruction windows the default chaos misses, and that a refused breakpoint
leaves the run unaimed and says so."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from test_mutants import example_lib  # noqa: F401  (the module fixture)

from pytest_rseq import Chaos, Workload, mutants
from pytest_rseq.elf.descriptors import find_descriptors
from pytest_rseq.elf.image import Image, open_image
from pytest_rseq.elf.mutation import aim_problem, hint, outcome
from pytest_rseq.engine.runner import run_spec
from pytest_rseq.engine.spec import RunSpec

pytestmark = pytest.mark.skipif(
    not Path("/proc/sys/kernel/perf_event_paranoid").exists(), reason="no perf events here"
)


def _sections(lib: Path) -> dict[str, tuple[int, int]]:
    """{descriptor label: (start_ip, end)} of the original library."""
    _, fh, elf = open_image(lib)
    with fh:
        return {
            d.label: (d.start_ip, d.start_ip + d.post_commit_offset)
            for d in find_descriptors(Image(elf))
        }


def _aimed(workload: Workload, aim: tuple[int, ...], chaos: Chaos, **kw):
    spec = RunSpec.build(workload, chaos=chaos, **kw)
    return run_spec(dataclasses.replace(spec, aim=aim))


def test_each_mutant_aims_inside_the_original_section(example_lib: Path, tmp_path: Path):  # noqa: F811
    """Every address is in the original's section (a hit there only aborts it); the
    commit is outside the mutant's section for unprotected and commit-outside, and
    late-start first aims between its CPU check and its moved start."""
    sections = _sections(example_lib)
    made = mutants(example_lib, tmp_path)
    assert made and all(m.made for m in made)
    for m in made:
        start, end = sections[m.descriptor]
        mutated = _sections(m.path)[m.descriptor]  # type: ignore[arg-type]
        assert m.aim and all(start <= a < end for a in m.aim), (m.name, m.aim)
        *check, commit = m.aim
        assert commit == max(m.aim), "the commit, the section's last instruction, comes last"
        inside_mutant = mutated[0] <= commit < mutated[1]
        assert inside_mutant == (m.kind in ("bad-signature", "late-start")), (m.name, mutated)
        if m.kind == "late-start":
            (first,) = check
            assert start < first < mutated[0], "the CPU check has run, the section not begun"
        else:
            assert not check, m.name


@pytest.mark.parametrize("symbol", ["percpu_counter", "percpu_freelist"])
def test_a_hit_in_a_correct_section_is_a_signal_abort(
    example_lib: Path,  # noqa: F811
    tmp_path: Path,
    symbol: str,
):
    """No storm, no migrations, one thread more than CPUs (so a hit pauses the thread):
    every abort the breakpoints cause is attributed to a signal, one per hit, none of
    them found the section still active, and the correct library stays exact."""
    aims = sorted({a for m in mutants(example_lib, tmp_path, symbol=symbol) for a in m.aim})
    result = _aimed(
        Workload.from_library(example_lib, symbol),
        tuple(aims),
        Chaos.none(),
        threads=len(os.sched_getaffinity(0)) + 1,
        duration=0.2,
        seed=3,
    )
    c = result.counters
    assert result.expected == result.observed and result.crash is None, result.describe()
    assert c["aim_errno"] == 0 and c["aim_threads"] >= 2, dict(c)
    assert c["aim_hits"] > 0 and c["aim_in_section"] == 0, dict(c)
    assert result.aborts_by_cause["signal"] == c["aim_hits"], (result.aborts_by_cause, dict(c))
    assert c["aim_moves"] == 0 and c["aim_yields"] == c["aim_hits"], "no migrations: pauses"


def test_one_thread_a_cpu_without_migrations_arms_nothing(example_lib: Path, tmp_path: Path):  # noqa: F811
    """Signals only, one thread: a lone signal at the window cannot race anything, so
    the run stays the test's own (no breakpoint, no handler, no error)."""
    (m,) = [m for m in mutants(example_lib, tmp_path, symbol="percpu_counter")][2:3]
    result = _aimed(
        m.workload("percpu_counter"),
        m.aim,
        Chaos(signals_hz=500),
        threads=1,
        duration=0.1,
        evidence_cap=1,
        seed=2,
    )
    c = result.counters
    assert (c["aim_threads"], c["aim_hits"], c["aim_errno"]) == (0, 0, 0), dict(c)


@pytest.mark.parametrize("kind", ["commit-outside", "late-start"])
def test_an_aimed_run_kills_a_one_instruction_window(
    example_lib: Path,  # noqa: F811
    tmp_path: Path,
    kind: str,
):
    """The windows the default chaos seldom reaches in 0.3 s: aimed, the default chaos
    moves the thread away from its shard right there; the original, aimed at the same
    address, stays ok."""
    (m,) = [m for m in mutants(example_lib, tmp_path, symbol="percpu_freelist") if m.kind == kind][
        :1
    ]
    killed = _aimed(m.workload("percpu_freelist"), m.aim, Chaos.default(), duration=1.0, seed=5)
    assert killed.counters["aim_moves"] + killed.counters["aim_yields"] > 0, dict(killed.counters)
    assert outcome(killed) == "killed", killed.describe()
    control = _aimed(
        Workload.from_library(example_lib, "percpu_freelist"),
        m.aim,
        Chaos.default(),
        duration=0.3,
        seed=5,
    )
    assert control.ok and control.counters["aim_hits"] > 0, control.describe()


def test_a_refused_breakpoint_leaves_the_run_unaimed_and_says_so(example_lib: Path):  # noqa: F811
    """A breakpoint the kernel refuses (here an address in kernel space: EINVAL, as
    perf_event_paranoid 3 or a seccomp filter give EACCES or EPERM) never fails the
    run: it goes on unaimed, and a survivor's hint says what was missing."""
    result = _aimed(
        Workload.from_library(example_lib, "percpu_counter"),
        (0xFF00000000000000,),
        Chaos(signals_hz=2000),
        threads=len(os.sched_getaffinity(0)) + 1,  # threads share CPUs: the aim would arm
        duration=0.2,
        seed=1,
    )
    # The run itself is whole (its verdict is ok or, when this short run's signals
    # missed the tiny section, no-evidence; either way not broken by the refusal).
    assert result.ops > 0 and result.error is None and result.crash is None, result.describe()
    assert result.expected == result.observed and result.verdict in ("ok", "no-evidence")
    assert result.counters["aim_errno"] != 0 and result.counters["aim_threads"] == 0
    problem = aim_problem(result)
    assert problem and "no worker could set the aim breakpoints (EINVAL" in problem
    assert hint("commit-outside", result, Chaos(signals_hz=2000)).startswith("an aimed run: ")


def test_aim_is_checked(example_lib: Path):  # noqa: F811
    counter = Workload.from_library(example_lib, "percpu_counter")
    spec = RunSpec.build(counter, duration=0.1, seed=1)
    with pytest.raises(ValueError, match="at most 4 addresses"):
        dataclasses.replace(spec, aim=(1, 2, 3, 4, 5))
    with pytest.raises(ValueError, match="aim needs a library workload"):
        dataclasses.replace(RunSpec.build("counter", duration=0.1, seed=1), aim=(0x1000,))
    with pytest.raises(ValueError, match="aim address must be"):
        dataclasses.replace(spec, aim=(-1,))
    assert RunSpec.from_json(dataclasses.replace(spec, aim=(0x10,)).to_json()).aim == (0x10,)


TRAPPING_WORKLOAD = r"""
#include <signal.h>
#include <stdlib.h>
#include "pytest_rseq.h"

static void *create(uint32_t threads) { (void)threads; return calloc(1, sizeof(uint64_t)); }
static int op(void *state, struct prseq_thread *t)
{
    (void)t;
    if (__atomic_add_fetch((uint64_t *)state, 1, __ATOMIC_RELAXED) == 100000)
        raise(SIGTRAP);
    return 0;
}
static uint64_t total(void *state) { return *(uint64_t *)state; }
static void destroy(void *state) { free(state); }
static const struct prseq_workload w = {
    .abi_version = PRSEQ_ABI_VERSION, .name = "trap", .create = create, .op = op,
    .fallback_op = op, .total = total, .destroy = destroy,
};
const struct prseq_workload *prseq_workload(void) { return &w; }
"""


def test_a_trap_that_is_not_a_breakpoint_of_ours_keeps_its_effect(tmp_path: Path):
    """The aim's SIGTRAP handler hands any other SIGTRAP (here raise(SIGTRAP) in the
    workload) to the disposition it replaced: the run dies of it as it would unaimed."""
    import subprocess

    from test_downstream import CC

    import pytest_rseq

    if CC is None:
        pytest.skip("no C compiler on this machine")
    source = tmp_path / "trap.c"
    source.write_text(TRAPPING_WORKLOAD)
    lib = tmp_path / "libtrap.so"
    subprocess.run(
        [CC, "-shared", "-fPIC", "-O1", f"-I{pytest_rseq.get_include()}", "-o", lib, source],
        check=True,
    )
    result = _aimed(
        Workload.from_library(lib, "prseq_workload"),
        (0x1000,),
        Chaos.none(),
        threads=len(os.sched_getaffinity(0)) + 1,  # threads share CPUs: the aim arms
        duration=0.3,
        seed=1,
    )
    assert result.crash == "SIGTRAP", result.describe()
