"""An ELF file's loaded view for the linter and the mutant maker: bytes by address,
relocations (a shared object's address fields are relocation addends) and symbols.

pyelftools is imported by :func:`open_image` only: loading the plugin stays cheap.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

# pyelftools is imported on the first lint() only: loading the plugin stays cheap.
SHF_EXECINSTR = 0x4


SHF_INFO_LINK = 0x40


# Relocation types whose value is base + addend, and those that are symbol + addend.
_RELATIVE = {"EM_X86_64": 8, "EM_AARCH64": 1027}


_ABSOLUTE64 = {"EM_X86_64": 1, "EM_AARCH64": 257}


class Image:
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
        return value is not None and is_exec(self.section_at(value))


def is_exec(sec: Any) -> bool:
    return sec is not None and bool(sec["sh_flags"] & SHF_EXECINSTR)


def open_image(path: str | Path) -> tuple[str, Any, Any]:
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
