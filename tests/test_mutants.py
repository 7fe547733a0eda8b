"""pytest_rseq.mutants and --rseq-mutate: every class made (or refused with a reason),
the user's file untouched, a mutant's bug shown by a run, and the plugin's scoring."""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import pytest
from test_downstream import CC, _build_module
from test_lint import SIG, build

import pytest_rseq
from pytest_rseq import Chaos, lint, mutants, run
from pytest_rseq.elf.mutants import CLASSES

pytestmark = [
    pytest.mark.skipif(CC is None, reason="no C compiler on this machine"),
    pytest.mark.skipif(SIG is None, reason=f"no rseq signature known for {platform.machine()}"),
]


@pytest.fixture(scope="module")
def example_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's correct library, built from source."""
    built: dict[str, Path] = _build_module().build(tmp_path_factory.mktemp("percpu-mut"))
    return built["libpercpu.so"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_class_for_every_descriptor_of_the_example(example_lib: Path, tmp_path: Path):
    before = _digest(example_lib)
    made = mutants(example_lib, tmp_path)
    assert _digest(example_lib) == before, "the user's library was modified"
    labels = sorted({m.descriptor for m in made})
    assert len(labels) == 3  # freelist pop and push, counter add
    for label in labels:
        kinds = [m.kind for m in made if m.descriptor == label]
        assert kinds == list(CLASSES), (label, kinds)
    assert all(m.made and m.path and m.path.parent == tmp_path for m in made), [
        (m.name, m.reason) for m in made
    ]
    assert len({m.path for m in made}) == len(made)
    for m in made:
        assert m.function and m.function.split("+")[0] in ("freelist_op", "counter_op")
        assert m.kind in m.path.name and m.change  # type: ignore[union-attr]


def test_each_mutant_patches_its_descriptor_and_relocations(example_lib: Path, tmp_path: Path):
    """lint reads the relocated fields: the empty and bad-signature mutants fail it, the
    others pass (their descriptors stay valid, only wrong); nothing else changes."""
    expected = {
        "unprotected": ["empty"],
        "commit-outside": [],
        "late-start": [],
        "bad-signature": ["signature"],
    }
    original = example_lib.read_bytes()
    for m in mutants(example_lib, tmp_path, symbol="percpu_counter"):
        assert m.path is not None
        assert [f.check for f in lint(m.path)] == expected[m.kind], m.name
        data = m.path.read_bytes()
        assert len(data) == len(original), m.name
        changed = [i for i, (a, b) in enumerate(zip(original, data, strict=True)) if a != b]
        assert 0 < len(changed) <= 32, (m.name, changed)


def test_mutants_follow_the_workload_symbol(example_lib: Path, tmp_path: Path):
    counter = {
        m.function.split("+")[0] for m in mutants(example_lib, tmp_path, symbol="percpu_counter")
    }  # type: ignore[union-attr]
    freelist = mutants(example_lib, tmp_path, symbol="percpu_freelist")
    assert counter == {"counter_op"}
    assert {m.function.split("+")[0] for m in freelist} == {"freelist_op"}  # type: ignore[union-attr]
    assert len(freelist) == 2 * len(CLASSES)


def test_a_class_that_cannot_be_made_says_why(tmp_path: Path):
    """The hand-made section is two nops: no cpu_id read, so no late-start mutant."""
    lib = build(tmp_path, "twonops")
    made = {m.kind: m for m in mutants(lib, tmp_path / "out")}
    assert sorted(made) == sorted(CLASSES)
    late = made["late-start"]
    assert late.path is None and "cpu_id" in late.reason
    with pytest.raises(ValueError, match="not made"):
        late.workload()
    assert made["commit-outside"].made and "0x2 -> 0x1" in made["commit-outside"].change
    one = build(tmp_path, "onenop", post_commit="1")
    refused = {m.kind: m for m in mutants(one, tmp_path / "out1")}["commit-outside"]
    assert refused.path is None and "one instruction" in refused.reason


def test_bad_paths_are_value_errors(tmp_path: Path):
    with pytest.raises(ValueError, match="does not exist"):
        mutants(tmp_path / "missing.so")


def test_mutants_is_public_api():
    assert pytest_rseq.mutants is mutants
    assert "Mutant" in pytest_rseq.__all__


@pytest.mark.parametrize("symbol", ["percpu_counter", "percpu_freelist"])
def test_the_bad_signature_mutant_crashes_under_default_chaos(example_lib: Path, tmp_path, symbol):
    (m,) = [m for m in mutants(example_lib, tmp_path, symbol=symbol) if m.kind == "bad-signature"][
        :1
    ]
    result = run(m.workload(symbol), chaos=Chaos.default(), duration=0.3, seed=1)
    assert result.verdict == "bug" and result.crash == "SIGSEGV", result.describe()


MUTATE_TEST = """
import pytest
from pytest_rseq import Chaos, Workload

LIB = Workload.from_library({path!r}, "percpu_counter")


@pytest.mark.rseq(threads=1, chaos=Chaos(signals_hz=20000), duration=0.3)
def test_weak(rseq_stress):
    rseq_stress(LIB).assert_consistent()


@pytest.mark.rseq(mutate=False)
def test_opted_out(rseq_stress):
    rseq_stress(LIB, threads=1, chaos=Chaos(signals_hz=20000), duration=0.2).assert_consistent()
"""


def test_rseq_mutate_scores_each_call_and_names_survivors(
    example_lib: Path, pytester: pytest.Pytester
):
    pytester.makepyfile(MUTATE_TEST.format(path=str(example_lib)))
    out = pytester.runpytest_subprocess("-p", "no:xdist", "--rseq-mutate", "--rseq-json=r.json")
    out.assert_outcomes(passed=1, failed=1)
    out.stdout.fnmatch_lines(
        [
            "*rseq mutation*",
            "*test_weak*killed 1/4*",
            "*survived commit-outside@counter_op*",
            "*survived late-start@counter_op*might kill it: a second thread*",
        ]
    )
    assert "test_opted_out [" not in out.stdout.str()
    rows = json.loads((pytester.path / "r.json").read_text())["rows"]
    weak = next(r for r in rows if r["test"].endswith("test_weak"))
    record = weak["mutation"]
    assert record["killed"] == 1 and record["made"] == 4 and record["score"] == "killed 1/4"
    outcomes = {m["kind"]: m["outcome"] for m in record["mutants"]}
    assert outcomes["bad-signature"] == "killed" and outcomes["late-start"] == "survived"
    # One thread, no migrations: the aim had nothing to perturb with and armed nothing,
    # so no aimed original was needed.
    late = next(m for m in record["mutants"] if m["kind"] == "late-start")
    assert late["address"] and late["aim"] == dict.fromkeys(
        ("threads", "hits", "moves", "yields"), 0
    ), late
    assert record["aimed_original"] == []
    assert "mutation" not in next(r for r in rows if r["test"].endswith("test_opted_out"))


def test_the_marker_keyword_is_checked(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.rseq(mutate="yes")
        def test_bad(rseq_stress):
            pass
        """
    )
    out = pytester.runpytest_subprocess("-p", "no:xdist")
    out.assert_outcomes(errors=1)
    out.stdout.fnmatch_lines(["*mutate must be True or False, got 'yes'*"])


def test_aarch64_mutants_of_the_example(tmp_path: Path):
    """The cross-compiled example: every class for each of its three descriptors (the
    aarch64 CPU check loads through a register, then compares and branches)."""
    import shutil

    cc = shutil.which("aarch64-linux-gnu-gcc")
    if cc is None:
        pytest.skip("no aarch64 cross compiler on this machine")
    build_lib = _build_module()
    old = build_lib.os.environ.get("CC")
    build_lib.os.environ["CC"] = cc
    try:
        lib = build_lib.build(tmp_path / "a64")["libpercpu.so"]
    finally:
        if old is None:
            del build_lib.os.environ["CC"]
        else:
            build_lib.os.environ["CC"] = old
    for symbol, count in (("percpu_counter", 1), ("percpu_freelist", 2)):
        made = mutants(lib, tmp_path / symbol, symbol=symbol)
        assert [m.kind for m in made] == list(CLASSES) * count, [(m.name, m.reason) for m in made]
        assert all(m.made for m in made), [(m.name, m.reason) for m in made]
        checks = {m.kind: [f.check for f in lint(m.path)] for m in made if m.path}
        assert checks["unprotected"] == ["empty"] and checks["bad-signature"] == ["signature"]
