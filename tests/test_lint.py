"""pytest_rseq.lint: flags broken rseq descriptors, passes the built-in correct ones."""

from __future__ import annotations

import importlib
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

import pytest_rseq
from pytest_rseq.elf.lint import LintError, LintFinding, check_library, lint

CC = shutil.which("cc") or shutil.which("gcc")


def _signature(arch: str) -> int:
    """The rseq signature of ``arch`` as pytest_rseq.h defines it (read from the core)."""
    from pytest_rseq._native import load

    return int(getattr(load()[1], f"PRSEQ_RSEQ_SIG_{arch.upper()}"))


# Cross compilers, when the machine has them: the linter reads either architecture.
CROSS = {
    "aarch64": (shutil.which("aarch64-linux-gnu-gcc"), _signature("aarch64")),
    "x86_64": (shutil.which("x86_64-linux-gnu-gcc"), _signature("x86_64")),
}
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler on this machine")
SIG = CROSS[platform.machine()][1] if platform.machine() in CROSS else None

# One function holding a section [1, 2) and an abort handler at 4, preceded by
# {sig_bytes}; the descriptor fields are filled in per test.
SECTION_ASM = r"""
__asm__(
    ".text\n"
    ".globl cs_fn\n"
    ".type cs_fn, %function\n"
    "cs_fn:\n"
    "1:\n"
    "nop\n"
    "nop\n"
    "2:\n"
    "nop\n"
    "{sig_bytes}\n"
    "4:\n"
    "nop\n"
    ".size cs_fn, .-cs_fn\n"
    ".pushsection {cs_section}, \"aw\"\n"
    "{cs_head}\n"
    "3:\n"
    ".long {version}, {flags}\n"
    ".quad 1b, {post_commit}, {abort}\n"
    ".popsection\n"
    ".pushsection __rseq_cs_ptr_array, \"aw\"\n"
    ".quad {ptr}\n"
    ".popsection\n"
    "{extra}");
"""
# A second section, cs2_fn, whose abort handler has a wrong signature and whose
# descriptor lies in .data.rel.ro, named by no __rseq_cs_ptr_array entry.
OUTSIDE_ASM = (
    r".text\n.globl cs2_fn\n.type cs2_fn, %function\ncs2_fn:\n5:\nnop\nnop\n6:\nnop\n"
    r".long {bad_sig}\n7:\nnop\n.size cs2_fn, .-cs2_fn\n"
    r".pushsection .data.rel.ro, \"aw\"\n.balign 32\n.long 0, 0\n.quad 5b, (6b - 5b), 7b\n"
    r".popsection\n"
)
GOOD = {
    "version": "0",
    "flags": "0",
    "post_commit": "(2b - 1b)",
    "abort": "4b",
    "ptr": "3b",
    "sig_bytes": f".long {SIG:#x}" if SIG else "",
    "cs_section": "__rseq_cs",
    "cs_head": ".balign 32",
    "extra": "",
}


def build(tmp_path: Path, name: str, cc: str | None = None, **fields: str) -> Path:
    """Compile a one-section shared library with the given descriptor fields."""
    src = tmp_path / f"{name}.c"
    src.write_text(_fill({**GOOD, **fields}))
    out = tmp_path / f"lib{name}.so"
    subprocess.run([cc or CC, "-shared", "-fPIC", "-o", str(out), str(src)], check=True)
    return out


def _fill(fields: dict[str, str]) -> str:
    text = SECTION_ASM
    for key, value in fields.items():
        text = text.replace("{" + key + "}", value)
    return text


def checks(findings: list[LintFinding]) -> list[str]:
    return [f.check for f in findings]


pytestmark = [
    needs_cc,
    pytest.mark.skipif(SIG is None, reason=f"no rseq signature known for {platform.machine()}"),
]


def test_a_correct_section_passes(tmp_path: Path) -> None:
    assert lint(build(tmp_path, "good")) == []


def test_empty_section_is_flagged(tmp_path: Path) -> None:
    findings = lint(build(tmp_path, "empty", post_commit="0"))
    assert checks(findings) == ["empty"]
    assert "post_commit_offset is 0" in findings[0].message


def test_abort_without_signature_is_flagged(tmp_path: Path) -> None:
    findings = lint(build(tmp_path, "nosig", sig_bytes="nop\\n nop\\n nop\\n nop"))
    assert checks(findings) == ["signature"]
    assert f"{SIG:#010x}" in findings[0].message


def test_wrong_signature_is_flagged(tmp_path: Path) -> None:
    findings = lint(build(tmp_path, "badsig", sig_bytes=f".long {SIG + 1:#x}"))
    assert checks(findings) == ["signature"]
    assert f"found {SIG + 1:#010x}" in findings[0].message


def test_commit_outside_the_section_is_flagged(tmp_path: Path) -> None:
    findings = lint(build(tmp_path, "outside", post_commit="0x1000000"))
    assert checks(findings) == ["commit-outside"]
    assert ".text" in findings[0].message


def test_commit_before_start_is_flagged(tmp_path: Path) -> None:
    findings = lint(build(tmp_path, "backwards", post_commit="-4"))
    assert checks(findings) == ["commit-before-start"]


def test_abort_inside_the_section_is_flagged(tmp_path: Path) -> None:
    findings = lint(build(tmp_path, "inside", abort="1b + 1"))
    assert "abort-inside" in checks(findings)


def test_a_descriptor_outside_rseq_cs_is_found_and_checked(tmp_path: Path) -> None:
    extra = OUTSIDE_ASM.replace("{bad_sig}", f"{SIG + 1:#x}")
    findings = lint(build(tmp_path, "outside_sig", extra=extra))
    assert checks(findings) == ["signature"], [str(f) for f in findings]
    assert findings[0].descriptor.startswith(".data.rel.ro[0] at ")
    assert (findings[0].function or "").startswith("cs2_fn+")
    good = OUTSIDE_ASM.replace("{bad_sig}", f"{SIG:#x}")
    assert lint(build(tmp_path, "outside_good", extra=good)) == []


def test_a_descriptor_behind_the_ptr_array_is_checked_wherever_it_lies(tmp_path: Path) -> None:
    lib = build(
        tmp_path,
        "ptr_outside",
        cs_section=".data.rel.ro",
        sig_bytes=f".long {SIG + 1:#x}",
        post_commit="0x1000000",  # no layout would accept it: only the ptr array finds it
    )
    findings = lint(lib)
    assert checks(findings) == ["commit-outside", "signature"], [str(f) for f in findings]
    assert findings[0].descriptor.startswith(".data.rel.ro[0]")


def test_an_8_byte_aligned_descriptor_is_misaligned_and_still_checked(tmp_path: Path) -> None:
    head = ".balign 32\\n .quad 0"  # the descriptor starts 8 bytes into a 32-byte slot
    findings = lint(build(tmp_path, "misaligned", cs_head=head, sig_bytes=f".long {SIG + 1:#x}"))
    assert checks(findings) == ["misaligned", "signature"], [str(f) for f in findings]
    assert findings[0].address % 32 == 8
    assert "start_ip 0x0" not in " ".join(str(f) for f in findings)
    alone = lint(build(tmp_path, "misaligned_ok", cs_head=head))
    assert checks(alone) == ["misaligned"]


def test_version_and_flags_are_checked(tmp_path: Path) -> None:
    findings = lint(build(tmp_path, "verflags", version="1", flags="2"))
    assert checks(findings) == ["version", "flags"]


def test_ptr_array_entry_must_point_at_a_descriptor(tmp_path: Path) -> None:
    findings = lint(build(tmp_path, "ptr", ptr="3b + 8"))
    assert checks(findings) == ["ptr-array"]
    assert findings[0].descriptor.startswith("__rseq_cs_ptr_array[0]")


def test_each_finding_names_the_descriptor_its_address_and_function(tmp_path: Path) -> None:
    lib = build(tmp_path, "named", post_commit="0")
    (finding,) = lint(lib)
    assert finding.descriptor.startswith(f"__rseq_cs[0] at {finding.address:#x}")
    assert finding.function == "cs_fn+0x0"
    assert str(lib) in str(finding) and f"{finding.address:#x}" in str(finding)


def test_check_library_raises_with_every_finding(tmp_path: Path) -> None:
    lib = build(tmp_path, "raise", post_commit="0", version="1")
    with pytest.raises(LintError, match="2 problem") as info:
        check_library(lib)
    assert checks(info.value.findings) == ["version", "empty"]
    check_library(build(tmp_path, "fine"))


def test_the_built_in_sections_pass_except_the_bad_signature_canary() -> None:
    native = importlib.import_module("pytest_rseq._prseq")
    findings = lint(native.__file__)
    # canary_bad_signature's abort handler has a wrong signature on purpose.
    assert [(f.check, (f.function or "").split("+")[0]) for f in findings] == [
        ("signature", "op_bad_sig")
    ], [str(f) for f in findings]


def test_a_table_of_function_pointers_is_no_descriptor(tmp_path: Path) -> None:
    src = tmp_path / "table.c"
    src.write_text(
        "static int f(void) { return 1; }\nstatic int g(void) { return 2; }\n"
        "struct ops { unsigned a, b; int (*f)(void); unsigned long n; int (*g)(void); };\n"
        "const struct ops table = { 0, 0, f, 4, g };\n"
    )
    lib = tmp_path / "libtable.so"
    subprocess.run([CC, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    assert checks(lint(lib)) == ["no-descriptors"]


def test_a_library_without_descriptors_is_not_a_pass(tmp_path: Path) -> None:
    src = tmp_path / "plain.c"
    src.write_text("int plain(void) { return 1; }\n")
    lib = tmp_path / "libplain.so"
    subprocess.run([CC, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    assert checks(lint(lib)) == ["no-descriptors"]


def test_bad_paths_are_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        lint(tmp_path / "missing.so")
    text = tmp_path / "notes.txt"
    text.write_text("not an ELF file\n")
    with pytest.raises(ValueError, match="not an ELF file"):
        lint(text)
    obj = tmp_path / "obj.o"
    (tmp_path / "obj.c").write_text(_fill(GOOD))
    subprocess.run([CC, "-c", "-fPIC", "-o", str(obj), str(tmp_path / "obj.c")], check=True)
    with pytest.raises(ValueError, match="object file"):
        lint(obj)


def test_lint_is_public_api() -> None:
    assert pytest_rseq.lint is lint
    assert pytest_rseq.LintError is LintError


@pytest.mark.parametrize("arch", sorted(CROSS))
def test_lint_reads_either_architecture(tmp_path: Path, arch: str) -> None:
    cc, sig = CROSS[arch]
    if cc is None:
        pytest.skip(f"no {arch} cross compiler on this machine")
    sig_bytes = f".long {sig:#x}"
    assert lint(build(tmp_path, "xgood", cc, sig_bytes=sig_bytes)) == []
    bad_sig = lint(build(tmp_path, "xbadsig", cc, sig_bytes=f".long {sig + 1:#x}"))
    assert checks(bad_sig) == ["signature"] and f"{sig:#010x}" in bad_sig[0].message
    assert checks(lint(build(tmp_path, "xempty", cc, sig_bytes=sig_bytes, post_commit="0"))) == [
        "empty"
    ]
    outside = build(tmp_path, "xout", cc, sig_bytes=sig_bytes, post_commit="0x1000000")
    assert checks(lint(outside)) == ["commit-outside"]
