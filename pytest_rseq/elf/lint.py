"""A static linter for rseq critical sections in a shared library or executable.

``lint(path)`` finds every descriptor (``struct rseq_cs``) of the library
with pyelftools, wherever it lies: in ``__rseq_cs`` (read in 8-byte steps, so
a descriptor aligned to 8 rather than 32 bytes is found, and reported as
misaligned), through every ``__rseq_cs_ptr_array`` entry, and by its layout
(``version``, ``flags``, a relocated ``start_ip``, ``post_commit_offset``, a
relocated ``abort_ip``) in any other data section. It checks what the kernel
will check at the first abort, before anything runs: version and flags 0, start and
commit inside one executable section, commit after start, a non-empty
section, an abort address outside the section in executable code and
preceded by the rseq signature, and every entry of ``__rseq_cs_ptr_array``
pointing at a real descriptor. In a shared object the address fields are
dynamic relocations (``R_X86_64_RELATIVE``...), so values come from the
relocation addends where there is one and from the section bytes otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import RseqError, hide_for_caller_errors
from .descriptors import (
    DESCRIPTOR_SECTION,
    DESCRIPTOR_SIZE,
    PTR_ARRAY_SECTION,
    Descriptor,
    find_descriptors,
    ptr_array,
)
from .image import Image, is_exec, open_image

SIGNATURES = {"EM_X86_64": 0x53053053, "EM_AARCH64": 0xD428BC00}
"""The signature word that must precede every abort address, per ELF machine."""


@dataclass(frozen=True)
class LintFinding:
    """One problem of one descriptor (or of the library as a whole).

    ``check`` is a short stable id (``"signature"``, ``"empty"``,
    ``"commit-outside"``...), ``address`` the descriptor's address (or the
    pointer-array entry's), ``function`` the symbol holding ``start_ip`` when
    the library has one.
    """

    library: str
    descriptor: str
    address: int
    check: str
    message: str
    function: str | None = None

    def __str__(self) -> str:
        return f"{self.library}: {self.descriptor}: {self.message}"


class LintError(RseqError):
    """A library's rseq critical sections failed :func:`lint`; ``findings`` lists why."""

    def __init__(self, path: str, findings: list[LintFinding]) -> None:
        self.path = path
        self.findings = findings
        lines = "\n".join(f"  - {f.descriptor}: {f.message}" for f in findings)
        super().__init__(f"rseq lint: {len(findings)} problem(s) in {path}:\n{lines}")


def _check_descriptor(image: Image, d: Descriptor, signature: int) -> Iterator[tuple[str, str]]:
    if d.address % DESCRIPTOR_SIZE:
        yield (
            "misaligned",
            (
                f"descriptor at {d.address:#x} is not {DESCRIPTOR_SIZE}-byte aligned: the rseq "
                f"ABI declares struct rseq_cs aligned({DESCRIPTOR_SIZE}); use .balign 32"
            ),
        )
    if d.version != 0:
        yield "version", f"version is {d.version}, the kernel accepts only 0"
    if d.flags != 0:
        yield "flags", f"flags are {d.flags:#x}; the kernel rejects any flag since Linux 6.1"
    start_sec = image.section_at(d.start_ip)
    if not is_exec(start_sec):
        yield "start", f"start_ip {d.start_ip:#x} is not in an executable section"
        return
    end = d.start_ip + d.post_commit_offset
    sec_lo, sec_hi = start_sec["sh_addr"], start_sec["sh_addr"] + start_sec["sh_size"]
    if d.post_commit_offset == 0:
        yield "empty", f"empty critical section: post_commit_offset is 0 at {d.start_ip:#x}"
    elif d.post_commit_offset >= 2**63:
        yield (
            "commit-before-start",
            (f"commit address {end % 2**64:#x} lies before start_ip {d.start_ip:#x}"),
        )
    elif end > sec_hi:
        yield (
            "commit-outside",
            (
                f"commit address {end:#x} (start_ip {d.start_ip:#x} + {d.post_commit_offset:#x}) "
                f"lies outside {start_sec.name} [{sec_lo:#x}, {sec_hi:#x}) that holds start_ip"
            ),
        )
    sane_range = 0 < d.post_commit_offset < 2**63 and end <= sec_hi
    if sane_range and d.start_ip <= d.abort_ip < end:
        yield (
            "abort-inside",
            (
                f"abort_ip {d.abort_ip:#x} lies inside the critical section "
                f"[{d.start_ip:#x}, {end:#x})"
            ),
        )
    if not is_exec(image.section_at(d.abort_ip)):
        yield "abort", f"abort_ip {d.abort_ip:#x} is not in an executable section"
        return
    raw = image.read(d.abort_ip - 4, 4)
    found = int.from_bytes(raw, "little" if image.little else "big") if raw else None
    if found != signature:
        what = f"{found:#010x}" if found is not None else "no readable bytes"
        yield (
            "signature",
            (
                f"abort_ip {d.abort_ip:#x} is not preceded by the rseq signature "
                f"{signature:#010x} (found {what}): the first abort kills the thread with SIGSEGV"
            ),
        )


def lint(path: str | Path, *, signature: int | None = None) -> list[LintFinding]:
    """Check every rseq critical-section descriptor of the ELF file at ``path``.

    Args:
        path: a shared library or executable (x86_64 or aarch64).
        signature: the signature word to expect before abort addresses;
            default: the architecture's usual one (``SIGNATURES``).

    Returns:
        The findings, empty when every descriptor passed. A library where no
        descriptor is found gets one ``"no-descriptors"`` finding: nothing
        was checked, which is not a pass.

    Raises:
        ValueError: ``path`` is missing, not an ELF file, or an object file.
    """
    name, fh, elf = open_image(path)
    with fh:
        image = Image(elf)
        expected_sig = signature if signature is not None else SIGNATURES.get(image.machine)
        if expected_sig is None:
            return [
                LintFinding(
                    name, "library", 0, "arch", f"no rseq signature known for {image.machine}"
                )
            ]
        descriptors = find_descriptors(image)
        if not descriptors:
            return [
                LintFinding(
                    name,
                    "library",
                    0,
                    "no-descriptors",
                    f"no rseq descriptor found ({DESCRIPTOR_SECTION}, {PTR_ARRAY_SECTION} "
                    "or by layout): nothing to check",
                )
            ]
        findings: list[LintFinding] = []
        for d in descriptors:
            func = image.function_at(d.start_ip)
            label = d.label + (f" ({func})" if func else "")
            for check, message in _check_descriptor(image, d, expected_sig):
                findings.append(LintFinding(name, label, d.address, check, message, func))
        findings += _check_ptr_array(image, name, {d.address for d in descriptors})
        return findings


def _check_ptr_array(image: Image, name: str, descriptors: set[int]) -> list[LintFinding]:
    findings = []
    for index, address, value in ptr_array(image):
        if value in descriptors:
            continue
        target = "a symbol outside the library" if value is None else f"{value:#x}"
        findings.append(
            LintFinding(
                name,
                f"{PTR_ARRAY_SECTION}[{index}] at {address:#x}",
                address,
                "ptr-array",
                f"entry points at {target}, which is no descriptor",
            )
        )
    return findings


def check_library(path: str | Path, *, signature: int | None = None) -> None:
    """Raise :class:`LintError` listing every finding of :func:`lint`; for ``--rseq-lint``.

    Raises:
        LintError: the library has findings.
        ValueError: ``path`` is missing or not a linked ELF file.
    """
    __tracebackhide__ = hide_for_caller_errors
    findings = lint(path, signature=signature)
    if findings:
        raise LintError(str(path), findings)
