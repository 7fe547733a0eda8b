"""Finding a library's rseq descriptors (``struct rseq_cs``): in ``__rseq_cs``, behind
``__rseq_cs_ptr_array``, and by their layout in any other data section."""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import Any

from .image import Image, is_exec

DESCRIPTOR_SECTION = "__rseq_cs"


PTR_ARRAY_SECTION = "__rseq_cs_ptr_array"


DESCRIPTOR_SIZE = 32


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


def descriptor_at(image: Image, address: int, section: str, found_by: str) -> Descriptor | None:
    """The 32 bytes at ``address`` read as a descriptor (index 0; None: unreadable)."""
    chunk = image.read(address, DESCRIPTOR_SIZE)
    if chunk is None:
        return None
    version, flags = struct.unpack_from("<II" if image.little else ">II", chunk)
    start = image.word(address + 8, chunk[8:16]) or 0
    post = image.word(address + 16, chunk[16:24]) or 0
    abort = image.word(address + 24, chunk[24:32]) or 0
    return Descriptor(section, 0, address, version, flags, start, post, abort, found_by)


def _shaped(image: Image, address: int) -> bool:
    """A relocated ``start_ip`` at +8 and ``abort_ip`` at +24, a plain word between."""
    return (
        image.code_pointer(address + 8)
        and image.code_pointer(address + 24)
        and address + 16 not in image.relocated
    )


def _plausible(image: Image, d: Descriptor) -> bool:
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


def _scan(image: Image, section: Any, layout_only: bool) -> list[Descriptor]:
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
        d = descriptor_at(image, address, name, "section" if not layout_only else "layout")
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
                d = descriptor_at(image, slot, name, "section")
                if d is not None:
                    found.append(d)
    return found


def ptr_array(image: Image) -> list[tuple[int, int, int | None]]:
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


def find_descriptors(image: Image) -> list[Descriptor]:
    """Every descriptor of the library: in ``__rseq_cs``, behind ``__rseq_cs_ptr_array``
    entries, and by layout in the other data sections; indexed per section."""
    found: dict[int, Descriptor] = {}
    cs = image.elf.get_section_by_name(DESCRIPTOR_SECTION)
    if cs is not None and cs["sh_type"] != "SHT_NOBITS":
        found.update((d.address, d) for d in _scan(image, cs, layout_only=False))
    for _, _, value in ptr_array(image):
        sec = image.section_at(value) if value is not None else None
        if value is not None and value not in found and sec is not None and not is_exec(sec):
            d = descriptor_at(image, value, sec.name, "ptr-array")
            if d is not None:
                found[value] = d
    for sec in image.sections:
        if (
            sec.name in _NOT_SCANNED
            or sec["sh_type"] != "SHT_PROGBITS"
            or is_exec(sec)
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
