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

import bisect
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import RseqError, hide_for_caller_errors

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
class Descriptor:
    """One ``struct rseq_cs`` found in a library, its address fields as relocated.

    ``section`` and ``index`` place it (``index`` counts the descriptors found
    in that section); ``found_by`` says how: ``"section"`` (in ``__rseq_cs``),
    ``"ptr-array"`` (an entry of ``__rseq_cs_ptr_array``) or ``"layout"`` (its
    shape, in another data section).
    """

    section: str
    index: int
    address: int
    version: int
    flags: int
    start_ip: int
    post_commit_offset: int
    abort_ip: int
    found_by: str = "section"

    @property
    def label(self) -> str:
        """``section[index] at 0xaddr``: how findings and mutants name it."""
        return f"{self.section}[{self.index}] at {self.address:#x}"


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
        self.entries = {start for start, _, _ in self.functions}
        self.pic = elf["e_type"] == "ET_DYN"

    def _relocations(self) -> dict[int, int | None]:
        """Address -> value written there by the dynamic loader (None: an outside symbol)."""
        from elftools.elf.relocation import RelocationSection
        from elftools.elf.sections import SymbolTableSection

        values: dict[int, int | None] = {}
        self.addend_offsets: dict[int, int] = {}
        """Address -> file offset of the RELA addend that fills it (RELATIVE ones)."""
        for sec in self.elf.iter_sections():
            if not isinstance(sec, RelocationSection) or sec["sh_flags"] & SHF_INFO_LINK:
                continue
            symtab = self.elf.get_section(sec["sh_link"]) if sec["sh_link"] else None
            for number, rel in enumerate(sec.iter_relocations()):
                kind = rel["r_info_type"]
                addend = rel["r_addend"] if rel.is_RELA() else 0
                if kind == _RELATIVE.get(self.machine):
                    values[rel["r_offset"]] = addend
                    if rel.is_RELA() and self.elf.elfclass == 64:
                        entry = sec["sh_offset"] + number * sec["sh_entsize"]
                        self.addend_offsets[rel["r_offset"]] = entry + 16
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

    def file_offset(self, address: int) -> int | None:
        """Where the byte at ``address`` lies in the file (None: unmapped or NOBITS)."""
        sec = self.section_at(address)
        if sec is None or sec["sh_type"] == "SHT_NOBITS":
            return None
        return int(sec["sh_offset"]) + address - int(sec["sh_addr"])

    def code_pointer(self, address: int) -> bool:
        """Whether the 64-bit word at ``address`` is (relocated to) an executable address."""
        raw = self.read(address, 8)
        if raw is None or (self.pic and address not in self.relocated):
            return False
        value = self.word(address, raw)
        return value is not None and _is_exec(self.section_at(value))

    def descriptor_at(self, address: int, section: str, found_by: str) -> Descriptor | None:
        """The 32 bytes at ``address`` read as a descriptor (index 0; None: unreadable)."""
        chunk = self.read(address, DESCRIPTOR_SIZE)
        if chunk is None:
            return None
        version, flags = struct.unpack_from("<II" if self.little else ">II", chunk)
        start = self.word(address + 8, chunk[8:16]) or 0
        post = self.word(address + 16, chunk[16:24]) or 0
        abort = self.word(address + 24, chunk[24:32]) or 0
        return Descriptor(section, 0, address, version, flags, start, post, abort, found_by)


def _is_exec(sec: Any) -> bool:
    return sec is not None and bool(sec["sh_flags"] & SHF_EXECINSTR)


def _shaped(image: _Image, address: int) -> bool:
    """A relocated ``start_ip`` at +8 and ``abort_ip`` at +24, a plain word between."""
    return (
        image.code_pointer(address + 8)
        and image.code_pointer(address + 24)
        and address + 16 not in image.relocated
    )


def _plausible(image: _Image, d: Descriptor) -> bool:
    """Outside ``__rseq_cs``, a shaped word group counts only if it reads like a descriptor:
    version and flags 0, a short forward range in one section, an abort address that is
    no function's entry (two function pointers of a table point at entries)."""
    sec = image.section_at(d.start_ip)
    return (
        d.version == 0
        and d.flags == 0
        and 0 < d.post_commit_offset < 2**16
        and sec is not None
        and d.start_ip + d.post_commit_offset <= sec["sh_addr"] + sec["sh_size"]
        and d.abort_ip not in image.entries
    )


def _scan(image: _Image, section: Any, layout_only: bool) -> list[Descriptor]:
    """Descriptors in ``section``, looked for at every 8-byte aligned address.

    In ``__rseq_cs`` (``layout_only`` False) a 32-byte aligned slot that is not
    all zero and overlaps no shaped descriptor is read as one too, so a
    descriptor broken beyond its shape is still checked.
    """
    base, size = int(section["sh_addr"]), int(section["sh_size"])
    name = section.name
    found: list[Descriptor] = []
    address = (base + 7) // 8 * 8
    while address + DESCRIPTOR_SIZE <= base + size:
        d = image.descriptor_at(address, name, "section" if not layout_only else "layout")
        if d is not None and _shaped(image, address) and (not layout_only or _plausible(image, d)):
            found.append(d)
            address += DESCRIPTOR_SIZE
        else:
            address += 8
    if not layout_only:
        taken = [(d.address, d.address + DESCRIPTOR_SIZE) for d in found]
        for slot in range((base + 31) // 32 * 32, base + size - DESCRIPTOR_SIZE + 1, 32):
            if any(lo < slot + DESCRIPTOR_SIZE and slot < hi for lo, hi in taken):
                continue
            relocated = any(slot + k in image.relocated for k in (8, 16, 24))
            chunk = image.read(slot, DESCRIPTOR_SIZE)
            if chunk is not None and (relocated or any(chunk)):
                d = image.descriptor_at(slot, name, "section")
                if d is not None:
                    found.append(d)
    return found


def _ptr_array(image: _Image) -> list[tuple[int, int, int | None]]:
    """(index, entry address, value) of every ``__rseq_cs_ptr_array`` entry."""
    section = image.elf.get_section_by_name(PTR_ARRAY_SECTION)
    if section is None or section["sh_type"] == "SHT_NOBITS":
        return []
    data: bytes = section.data()
    entries = []
    for index, offset in enumerate(range(0, len(data) - 7, 8)):
        address = section["sh_addr"] + offset
        entries.append((index, address, image.word(address, data[offset : offset + 8])))
    return entries


_NOT_SCANNED = {DESCRIPTOR_SECTION, PTR_ARRAY_SECTION, ".dynamic", ".got", ".got.plt"}


def find_descriptors(image: _Image) -> list[Descriptor]:
    """Every descriptor of the library: in ``__rseq_cs``, behind ``__rseq_cs_ptr_array``
    entries, and by layout in the other data sections; indexed per section."""
    found: dict[int, Descriptor] = {}
    cs = image.elf.get_section_by_name(DESCRIPTOR_SECTION)
    if cs is not None and cs["sh_type"] != "SHT_NOBITS":
        found.update((d.address, d) for d in _scan(image, cs, layout_only=False))
    for _, _, value in _ptr_array(image):
        sec = image.section_at(value) if value is not None else None
        if value is not None and value not in found and sec is not None and not _is_exec(sec):
            d = image.descriptor_at(value, sec.name, "ptr-array")
            if d is not None:
                found[value] = d
    for sec in image.sections:
        if (
            sec.name in _NOT_SCANNED
            or sec["sh_type"] != "SHT_PROGBITS"
            or _is_exec(sec)
            or not sec["sh_flags"] & 0x2  # SHF_ALLOC
        ):
            continue
        for d in _scan(image, sec, layout_only=True):
            found.setdefault(d.address, d)
    ordered = sorted(found.values(), key=lambda d: d.address)
    counts: dict[str, int] = {}
    result = []
    for d in ordered:
        index = counts.get(d.section, 0)
        counts[d.section] = index + 1
        result.append(replace(d, index=index))
    return result


def _check_descriptor(image: _Image, d: Descriptor, signature: int) -> Iterator[tuple[str, str]]:
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
        The findings, empty when every descriptor passed. A library where no
        descriptor is found gets one ``"no-descriptors"`` finding: nothing
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


def _check_ptr_array(image: _Image, name: str, descriptors: set[int]) -> list[LintFinding]:
    findings = []
    for index, address, value in _ptr_array(image):
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
