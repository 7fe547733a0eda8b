"""A static linter for rseq critical sections in a shared library or executable.

``lint(path)`` reads every descriptor (``struct rseq_cs``) in the library's
``__rseq_cs`` section with pyelftools and checks what the kernel will check
at the first abort, before anything runs: version and flags 0, start and
commit inside one executable section, commit after start, a non-empty
section, an abort address outside the section in executable code and
preceded by the rseq signature, and every entry of ``__rseq_cs_ptr_array``
pointing at a real descriptor. In a shared object the address fields are
dynamic relocations (``R_X86_64_RELATIVE``...), so values come from the
relocation addends where there is one and from the section bytes otherwise.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RseqError, hide_for_caller_errors

# pyelftools is imported on the first lint() only: loading the plugin stays cheap.
SHF_EXECINSTR = 0x4
SHF_INFO_LINK = 0x40

DESCRIPTOR_SECTION = "__rseq_cs"
PTR_ARRAY_SECTION = "__rseq_cs_ptr_array"
DESCRIPTOR_SIZE = 32
SIGNATURES = {"EM_X86_64": 0x53053053, "EM_AARCH64": 0xD428BC00}
"""The signature word that must precede every abort address, per ELF machine."""

# Relocation types whose value is base + addend, and those that are symbol + addend.
_RELATIVE = {"EM_X86_64": 8, "EM_AARCH64": 1027}
_ABSOLUTE64 = {"EM_X86_64": 1, "EM_AARCH64": 257}


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


@dataclass(frozen=True)
class _Descriptor:
    index: int
    address: int
    version: int
    flags: int
    start_ip: int
    post_commit_offset: int
    abort_ip: int


class _Image:
    """The loaded view of an ELF file: section bytes by address, relocations, symbols."""

    def __init__(self, elf: Any) -> None:
        self.elf = elf
        self.machine = str(elf["e_machine"])
        self.little = elf.little_endian
        self.sections = [s for s in elf.iter_sections() if s["sh_addr"] and s["sh_size"]]
        self.relocated = self._relocations()
        self.functions = self._functions()
        self._starts = [start for start, _, _ in self.functions]

    def _relocations(self) -> dict[int, int | None]:
        """Address -> value written there by the dynamic loader (None: an outside symbol)."""
        from elftools.elf.relocation import RelocationSection
        from elftools.elf.sections import SymbolTableSection

        values: dict[int, int | None] = {}
        for sec in self.elf.iter_sections():
            if not isinstance(sec, RelocationSection) or sec["sh_flags"] & SHF_INFO_LINK:
                continue
            symtab = self.elf.get_section(sec["sh_link"]) if sec["sh_link"] else None
            for rel in sec.iter_relocations():
                kind = rel["r_info_type"]
                addend = rel["r_addend"] if rel.is_RELA() else 0
                if kind == _RELATIVE.get(self.machine):
                    values[rel["r_offset"]] = addend
                elif kind == _ABSOLUTE64.get(self.machine) and isinstance(
                    symtab, SymbolTableSection
                ):
                    sym = symtab.get_symbol(rel["r_info_sym"])
                    defined = sym["st_shndx"] != "SHN_UNDEF"
                    values[rel["r_offset"]] = sym["st_value"] + addend if defined else None
        return values

    def _functions(self) -> list[tuple[int, int, str]]:
        from elftools.elf.sections import SymbolTableSection

        table = self.elf.get_section_by_name(".symtab") or self.elf.get_section_by_name(".dynsym")
        if not isinstance(table, SymbolTableSection):
            return []
        funcs = {
            (sym["st_value"], sym["st_size"], sym.name)
            for sym in table.iter_symbols()
            if sym["st_info"]["type"] == "STT_FUNC" and sym["st_value"] and sym.name
        }
        return sorted(funcs)

    def function_at(self, address: int) -> str | None:
        """The function symbol whose range holds ``address``, as ``name+0xoff``."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i < 0:
            return None
        start, size, name = self.functions[i]
        if address < start + max(size, 1):
            return f"{name}+{address - start:#x}"
        return None

    def section_at(self, address: int) -> Any:
        """The allocated section whose address range holds ``address``, or None."""
        for sec in self.sections:
            if sec["sh_addr"] <= address < sec["sh_addr"] + sec["sh_size"]:
                return sec
        return None

    def read(self, address: int, size: int) -> bytes | None:
        """``size`` bytes of file content at ``address``, or None (unmapped or NOBITS)."""
        sec = self.section_at(address)
        if sec is None or sec["sh_type"] == "SHT_NOBITS":
            return None
        offset = address - sec["sh_addr"]
        data: bytes = sec.data()
        return data[offset : offset + size] if offset + size <= len(data) else None

    def word(self, address: int, raw: bytes) -> int | None:
        """The 64-bit value at ``address`` after dynamic relocation."""
        if address in self.relocated:
            return self.relocated[address]
        return int.from_bytes(raw, "little" if self.little else "big")


def _is_exec(sec: Any) -> bool:
    return sec is not None and bool(sec["sh_flags"] & SHF_EXECINSTR)


def _descriptors(image: _Image, section: Any) -> Iterator[_Descriptor]:
    data: bytes = section.data()
    base = section["sh_addr"]
    order = "<" if image.little else ">"
    for index, offset in enumerate(range(0, len(data) - DESCRIPTOR_SIZE + 1, DESCRIPTOR_SIZE)):
        chunk = data[offset : offset + DESCRIPTOR_SIZE]
        address = base + offset
        relocated = any(address + k in image.relocated for k in (8, 16, 24))
        if not relocated and not any(chunk):
            continue  # alignment padding
        version, flags = struct.unpack_from(order + "II", chunk)
        start = image.word(address + 8, chunk[8:16])
        post = image.word(address + 16, chunk[16:24])
        abort = image.word(address + 24, chunk[24:32])
        yield _Descriptor(index, address, version, flags, start or 0, post or 0, abort or 0)


def _check_descriptor(image: _Image, d: _Descriptor, signature: int) -> Iterator[tuple[str, str]]:
    if d.version != 0:
        yield "version", f"version is {d.version}, the kernel accepts only 0"
    if d.flags != 0:
        yield "flags", f"flags are {d.flags:#x}; the kernel rejects any flag since Linux 6.1"
    start_sec = image.section_at(d.start_ip)
    if not _is_exec(start_sec):
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
    if not _is_exec(image.section_at(d.abort_ip)):
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


def _open(path: str | Path) -> tuple[str, Any, Any]:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    name = str(path)
    if not Path(path).is_file():
        raise ValueError(f"rseq lint: {name!r} does not exist")
    fh = open(path, "rb")  # noqa: SIM115 - closed by lint()
    try:
        elf = ELFFile(fh)
    except ELFError as exc:
        fh.close()
        raise ValueError(f"rseq lint: {name!r} is not an ELF file ({exc})") from None
    if elf["e_type"] == "ET_REL":
        fh.close()
        raise ValueError(
            f"rseq lint: {name!r} is an object file; lint the linked shared library or executable"
        )
    return name, fh, elf


def lint(path: str | Path, *, signature: int | None = None) -> list[LintFinding]:
    """Check every rseq critical-section descriptor of the ELF file at ``path``.

    Args:
        path: a shared library or executable (x86_64 or aarch64).
        signature: the signature word to expect before abort addresses;
            default: the architecture's usual one (``SIGNATURES``).

    Returns:
        The findings, empty when every descriptor passed. A library without a
        ``__rseq_cs`` section gets one ``"no-descriptors"`` finding: nothing
        was checked, which is not a pass.

    Raises:
        ValueError: ``path`` is missing, not an ELF file, or an object file.
    """
    name, fh, elf = _open(path)
    with fh:
        image = _Image(elf)
        expected_sig = signature if signature is not None else SIGNATURES.get(image.machine)
        if expected_sig is None:
            return [
                LintFinding(
                    name, "library", 0, "arch", f"no rseq signature known for {image.machine}"
                )
            ]
        section = elf.get_section_by_name(DESCRIPTOR_SECTION)
        if section is None or section["sh_type"] == "SHT_NOBITS":
            return [
                LintFinding(
                    name,
                    "library",
                    0,
                    "no-descriptors",
                    f"no {DESCRIPTOR_SECTION} section: no rseq descriptor to check",
                )
            ]
        findings: list[LintFinding] = []
        addresses = set()
        for d in _descriptors(image, section):
            addresses.add(d.address)
            func = image.function_at(d.start_ip)
            label = f"{DESCRIPTOR_SECTION}[{d.index}] at {d.address:#x}" + (
                f" ({func})" if func else ""
            )
            for check, message in _check_descriptor(image, d, expected_sig):
                findings.append(LintFinding(name, label, d.address, check, message, func))
        findings += _check_ptr_array(image, name, addresses)
        return findings


def _check_ptr_array(image: _Image, name: str, descriptors: set[int]) -> list[LintFinding]:
    section = image.elf.get_section_by_name(PTR_ARRAY_SECTION)
    if section is None or section["sh_type"] == "SHT_NOBITS":
        return []
    findings = []
    data: bytes = section.data()
    for index, offset in enumerate(range(0, len(data) - 7, 8)):
        address = section["sh_addr"] + offset
        value = image.word(address, data[offset : offset + 8])
        if value in descriptors:
            continue
        target = "a symbol outside the library" if value is None else f"{value:#x}"
        findings.append(
            LintFinding(
                name,
                f"{PTR_ARRAY_SECTION}[{index}] at {address:#x}",
                address,
                "ptr-array",
                f"entry points at {target}, which is no descriptor in {DESCRIPTOR_SECTION}",
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
