"""The aarch64 critical sections, disassembled: the shape ``lint`` and the mutants rely on.

For every descriptor of an aarch64 build: the section decodes into whole instructions,
starts with the 32-bit CPU-number load right after the store of the descriptor address
into ``rseq_cs``, ends with its commit store, and its abort address is a branch out of
the section preceded by the signature word. ``lint`` must agree: a "signature" finding
for exactly the descriptors whose word is not ``0xd428bc00`` (the bad-signature
canaries), nothing else.

On an aarch64 machine (the arm64 guest) this checks the real builds: pytest-rseq's own
compiled core and the example compiled with ``cc``. Elsewhere it checks the same sources
cross-compiled with ``aarch64-linux-gnu-gcc``.
"""

from __future__ import annotations

import importlib.util
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import pytest_rseq
from pytest_rseq.elf.descriptors import find_descriptors
from pytest_rseq.elf.disasm import capstone_for as _capstone
from pytest_rseq.elf.disasm import instructions as _instructions
from pytest_rseq.elf.image import Image as _Image
from pytest_rseq.elf.image import open_image as _open

ROOT = Path(__file__).resolve().parent.parent
GOOD_SIG = 0xD428BC00
BAD_SIG = 0xD428BC01
NATIVE = platform.machine() == "aarch64"
CROSS = "aarch64-linux-gnu-gcc"


@dataclass
class Section:
    """One descriptor of a library, decoded."""

    label: str
    function: str | None
    start: int
    end: int
    insns: list[Any]
    before: Any
    sig_word: int | None
    abort_insn: Any


def sections(path: Path) -> list[Section]:
    """Every descriptor of the aarch64 library at ``path``, disassembled with capstone."""
    _, fh, elf = _open(path)
    with fh:
        image = _Image(elf)
        assert image.machine == "EM_AARCH64", f"{path} is {image.machine}"
        cs = _capstone(image.machine)
        found = []
        for d in find_descriptors(image):
            end = d.start_ip + d.post_commit_offset
            word = image.read(d.abort_ip - 4, 4)
            before = _instructions(image, cs, d.start_ip - 4, d.start_ip)
            after = _instructions(image, cs, d.abort_ip, d.abort_ip + 4)
            found.append(
                Section(
                    d.label,
                    image.function_at(d.start_ip),
                    d.start_ip,
                    end,
                    _instructions(image, cs, d.start_ip, end),
                    before[0] if before else None,
                    int.from_bytes(word, "little") if word else None,
                    after[0] if after else None,
                )
            )
        return found


def _branch_target(insn: Any) -> int:
    return int(insn.op_str.lstrip("#"), 16)


def _memory_operand(insn: Any) -> str:
    return str(insn.op_str.split(",", 1)[1].strip())


def commits_what_it_loaded(section: Section) -> bool:
    """The last store writes a location (same address operand) an earlier load of the
    section read: the shared word the section updates, not a side store placed last."""
    loads = {_memory_operand(i) for i in section.insns[:-1] if i.mnemonic in ("ldr", "ldur")}
    return _memory_operand(section.insns[-1]) in loads


def assert_shape(section: Section) -> None:
    """The instruction-level contract of one aarch64 rseq section."""
    where = section.label
    insns = section.insns
    assert insns, f"{where}: nothing decodes in [{section.start:#x}, {section.end:#x})"
    assert (section.end - section.start) % 4 == 0, where
    covered = [section.start + 4 * i for i in range(len(insns))]
    assert [i.address for i in insns] == covered, f"{where}: undecodable bytes in the section"
    assert insns[-1].address + insns[-1].size == section.end, f"{where}: section cut short"
    # The descriptor address is stored into rseq_cs right before start_ip.
    assert section.before is not None, where
    assert section.before.mnemonic == "str" and section.before.op_str.startswith("x16,"), (
        f"{where}: before start_ip: {section.before.mnemonic} {section.before.op_str}"
    )
    # First the CPU check: a 32-bit load of the CPU number, compared, then a branch out.
    first = insns[0]
    assert first.mnemonic == "ldr" and first.op_str.startswith("w"), (
        f"{where}: first instruction {first.mnemonic} {first.op_str}"
    )
    assert insns[1].mnemonic == "cmp", f"{where}: {insns[1].mnemonic} after the CPU load"
    assert insns[2].mnemonic in ("b.ne", "bne"), f"{where}: {insns[2].mnemonic} after cmp"
    assert not (section.start <= _branch_target(insns[2]) < section.end), (
        f"{where}: the mismatch branch stays inside the section"
    )
    # The commit is the last instruction, and it is a store.
    last = insns[-1]
    assert last.mnemonic in ("str", "stur"), f"{where}: last instruction {last.mnemonic}"
    assert commits_what_it_loaded(section), (
        f"{where}: the last store ({last.op_str}) writes no location the section loaded"
    )
    # Signature word right before the abort address; the abort address branches out.
    assert section.sig_word in (GOOD_SIG, BAD_SIG), f"{where}: word {section.sig_word!r}"
    abort = section.abort_insn
    assert abort is not None and abort.mnemonic == "b", f"{where}: abort handler {abort}"
    assert not (section.start <= _branch_target(abort) < section.end), where


def assert_lint_agrees(path: Path, found: list[Section]) -> None:
    """lint flags the signature of exactly the descriptors whose word is not the good one."""
    findings = pytest_rseq.lint(path)
    bad = sorted(s.label for s in found if s.sig_word != GOOD_SIG)
    assert all(f.check == "signature" for f in findings), [str(f) for f in findings]
    assert sorted(f.descriptor.split(" (")[0] for f in findings) == bad


def _compiler() -> str:
    if NATIVE:
        return "cc"
    if shutil.which(CROSS) is None:
        pytest.skip(f"not an aarch64 machine and no {CROSS} (Debian: gcc-aarch64-linux-gnu)")
    return CROSS


def _core_library(tmp_path: Path) -> Path:
    """pytest-rseq's own sections: the compiled core on aarch64, else cross-built from
    counters.c and canaries.c."""
    if NATIVE:
        from pytest_rseq import _native

        ffi, lib = _native.load()
        from pytest_rseq import _prseq

        assert lib and ffi
        return Path(_prseq.__file__)
    out = tmp_path / "libworkloads.so"
    cmd = [
        _compiler(),
        "-std=gnu11",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-fPIC",
        "-shared",
        f"-I{ROOT / 'native'}",
        f"-I{ROOT / 'pytest_rseq' / 'include'}",
        # The built-in sections: the counters and the canaries.
        str(ROOT / "native" / "counters.c"),
        str(ROOT / "native" / "canaries.c"),
        "-o",
        str(out),
    ]
    subprocess.run(cmd, check=True)
    return out


def _example_libraries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("CC", _compiler())
    path = ROOT / "examples" / "downstream" / "build_lib.py"
    spec = importlib.util.spec_from_file_location("percpu_build_lib", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    libs: dict[str, Path] = module.build(tmp_path)
    return libs


def test_core_sections_have_the_shape_lint_expects(tmp_path: Path) -> None:
    library = _core_library(tmp_path)
    found = sections(library)
    assert found, f"no descriptor in {library}"
    for section in found:
        assert_shape(section)
    words = {s.sig_word for s in found}
    # The counters' sections and the bad-signature canary's.
    assert words == {GOOD_SIG, BAD_SIG}, sorted(map(hex, (w or 0 for w in words)))
    assert_lint_agrees(library, found)


def test_example_sections_have_the_shape_lint_expects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    libs = _example_libraries(tmp_path, monkeypatch)
    good = sections(libs["libpercpu.so"])
    assert len(good) >= 3, "counter add, free-list pop and push"
    for section in good:
        assert_shape(section)
        assert section.sig_word == GOOD_SIG, section.label
    assert_lint_agrees(libs["libpercpu.so"], good)
    broken = sections(libs["libpercpu_broken.so"])
    # The deliberately broken push stores head first: its last store is the node's next
    # pointer, which the section never loaded. Every other section has the right shape.
    early = [s for s in broken if not commits_what_it_loaded(s)]
    assert len(early) == 1 and "commit_early" in (early[0].function or ""), early
    for section in broken:
        if section is not early[0]:
            assert_shape(section)
    assert sum(s.sig_word == BAD_SIG for s in broken) >= 1
    assert_lint_agrees(libs["libpercpu_broken.so"], broken)


def test_the_shape_checks_catch_mutated_sections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each made mutant of the example (bounds moved, signature broken...) fails the checks."""
    from pytest_rseq import mutants

    libs = _example_libraries(tmp_path, monkeypatch)
    made = [m for m in mutants(libs["libpercpu.so"], tmp_path / "mut") if m.path is not None]
    assert {m.kind for m in made} >= {"commit-outside", "late-start", "bad-signature"}
    for mutant in made:
        assert mutant.path is not None
        with pytest.raises(AssertionError):
            found = sections(mutant.path)
            for section in found:
                assert_shape(section)
                assert section.sig_word == GOOD_SIG, section.label
            assert_lint_agrees(mutant.path, found)
