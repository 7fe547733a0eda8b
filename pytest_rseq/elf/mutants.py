"""Mutants of a downstream rseq library: copies with one descriptor broken on purpose.

``mutants(path)`` finds every descriptor the way :func:`pytest_rseq.lint` does
and writes, per descriptor, one copy of the library per bug class, patching
only descriptor data and the ``RELATIVE`` relocation addends that fill its
``start_ip``/``abort_ip`` (the user's file and source are never touched):

* ``unprotected``: ``post_commit_offset = 0``, the section protects nothing;
* ``commit-outside``: the section ends before its last instruction, so the
  commit store runs unprotected;
* ``late-start``: ``start_ip`` moved past the first instruction reading
  ``cpu_id``/``mm_cid`` (and the branch that tests it): a stale-CPU bug;
* ``bad-signature``: ``abort_ip`` moved to the next instruction, so the four
  bytes before it are not the signature.

Instruction boundaries come from the capstone disassembler (x86_64, aarch64).
A class that cannot be made for a descriptor is returned as a :class:`Mutant`
with ``path=None`` and the reason, never skipped silently.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from ..engine.workload import DEFAULT_SYMBOL, Workload
from .lint import SIGNATURES, Descriptor, _Image, _is_exec, _open, find_descriptors

CLASSES: tuple[str, ...] = ("unprotected", "commit-outside", "late-start", "bad-signature")
"""The mutant classes, in the order :func:`mutants` makes them."""

# Offsets in struct rseq of the fields a section compares with its CPU.
_CPU_FIELDS = {4: "cpu_id", 24: "mm_cid"}


@dataclass(frozen=True)
class Mutant:
    """One mutated copy of a library (or the reason it could not be made).

    ``kind`` is the class (``CLASSES``), ``descriptor`` the descriptor's label
    (``__rseq_cs[0] at 0x4060``), ``function`` the symbol + offset of its
    ``start_ip`` (None in a stripped library), ``path`` the mutated copy (None
    when ``reason`` says why it could not be made), ``change`` what was patched.
    """

    kind: str
    descriptor: str
    address: int
    function: str | None
    original: Path
    path: Path | None
    change: str = ""
    reason: str = ""

    @property
    def made(self) -> bool:
        """Whether the mutated copy exists (else ``reason`` says why not)."""
        return self.path is not None

    @property
    def name(self) -> str:
        """``kind@function`` (or ``kind@descriptor``): how reports name this mutant."""
        return f"{self.kind}@{self.function or self.descriptor}"

    def workload(self, symbol: str = DEFAULT_SYMBOL) -> Workload:
        """The mutated library's workload ``symbol`` (``Workload.from_library``).

        Raises:
            ValueError: the mutant could not be made.
        """
        if self.path is None:
            raise ValueError(f"mutant {self.name} was not made: {self.reason}")
        return Workload.from_library(self.path, symbol)


def _capstone(machine: str) -> Any:
    import capstone

    modes = {
        "EM_X86_64": (capstone.CS_ARCH_X86, capstone.CS_MODE_64),
        "EM_AARCH64": (capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM),
    }
    if machine not in modes:
        raise ValueError(f"mutants: no disassembler set up for {machine}")
    cs = capstone.Cs(*modes[machine])
    cs.detail = True
    return cs


def _instructions(image: _Image, cs: Any, start: int, end: int) -> list[Any]:
    """The instructions decoded from ``start`` up to ``end`` or the end of its section
    (stops at undecodable bytes)."""
    sec = image.section_at(start)
    if sec is not None:
        end = min(end, int(sec["sh_addr"]) + int(sec["sh_size"]))
    code = image.read(start, end - start) if end > start else None
    return list(cs.disasm(code, start)) if code else []


def _reads_cpu(insn: Any) -> bool:
    """Whether ``insn`` reads a 4-byte rseq field at offset 4 (cpu_id) or 24 (mm_cid)."""
    import capstone

    for op in insn.operands:
        if op.type == capstone.CS_OP_MEM and op.mem.disp in _CPU_FIELDS:
            return getattr(op, "size", 4) in (0, 4)
    return False


def _is_cond_branch(insn: Any) -> bool:
    import capstone

    if not insn.group(capstone.CS_GRP_JUMP):
        return False
    text = insn.mnemonic.lower()
    return text not in ("jmp", "b", "br") and (text.startswith(("j", "b.", "cb", "tb")))


def _loads_and_tests(insns: list[Any], i: int) -> bool:
    """``insns[i]`` reads 32 bits of memory, and a conditional branch follows within two
    instructions: the shape of a CPU check whose field address sits in a register
    (aarch64's ``ldr w17, [x8]; cmp w17, w2; b.ne``)."""
    import capstone

    insn = insns[i]
    reads = any(op.type == capstone.CS_OP_MEM for op in insn.operands)
    narrow = insn.op_str.startswith("w") or insn.mnemonic == "cmp"
    return (
        reads
        and narrow
        and insn.mnemonic in ("ldr", "ldur", "ldar", "cmp")
        and any(_is_cond_branch(x) for x in insns[i + 1 : i + 3])
    )


def _late_start(insns: list[Any]) -> tuple[int, str] | str:
    """(new start_ip, what moved) or why not."""
    found = next((i for i, x in enumerate(insns) if _reads_cpu(x)), None)
    if found is None:
        found = next((i for i in range(len(insns)) if _loads_and_tests(insns, i)), None)
    if found is None:
        return (
            "no instruction reading cpu_id/mm_cid (rseq offset 4 or 24, or a 32-bit load "
            "tested by a branch) found in the section"
        )
    j = found + 1
    # aarch64 loads then compares; x86 compares memory directly: skip to the branch.
    while j < len(insns) and j <= found + 2 and not _is_cond_branch(insns[j - 1]):
        j += 1
    if j >= len(insns):
        return "the cpu check is the whole section: moving start_ip past it empties it"
    moved = "; ".join(f"{x.mnemonic} {x.op_str}" for x in insns[:j])
    return insns[j].address, f"start_ip moved past: {moved}"


class _Patcher:
    """Writes a patched copy of the library: descriptor words and relocation addends."""

    def __init__(self, image: _Image, source: Path, out_dir: Path) -> None:
        self.image = image
        self.source = source
        self.out_dir = out_dir
        self.order: Literal["little", "big"] = "little" if image.little else "big"

    def word(self, address: int, value: int, patches: dict[int, bytes]) -> str | None:
        """Add the patches that make the word at ``address`` read ``value``; None or why not."""
        offset = self.image.file_offset(address)
        if offset is None:
            return f"{address:#x} is not in the file"
        patches[offset] = (value % 2**64).to_bytes(8, self.order)
        if address in self.image.relocated:
            addend = self.image.addend_offsets.get(address)
            if addend is None:
                return f"the relocation at {address:#x} is not a RELA RELATIVE one"
            patches[addend] = (value % 2**64).to_bytes(8, self.order)
        return None

    def write(self, name: str, patches: dict[int, bytes]) -> Path:
        target = self.out_dir / name
        shutil.copyfile(self.source, target)
        with open(target, "r+b") as fh:
            for offset, data in sorted(patches.items()):
                fh.seek(offset)
                fh.write(data)
        return target


def _file_name(stem: str, kind: str, d: Descriptor, function: str | None) -> str:
    where = (function or f"{d.section}_{d.index}").replace("+0x", "_")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{stem}.{kind}.{where}.so")


def _plans(image: _Image, cs: Any, d: Descriptor) -> Iterator[tuple[str, dict[int, int] | str]]:
    """(class, {field address: new value} or why not) for each class."""
    end = d.start_ip + d.post_commit_offset
    usable = _is_exec(image.section_at(d.start_ip)) and 0 < d.post_commit_offset < 2**16 and end > 0
    insns = _instructions(image, cs, d.start_ip, end) if usable else []
    whole = bool(insns) and insns[-1].address + insns[-1].size == end
    broken = "the descriptor does not describe a decodable section (lint it)"
    yield "unprotected", ({d.address + 16: 0} if usable else broken)
    if not whole:
        yield "commit-outside", broken
        yield "late-start", broken
    else:
        last = insns[-1].address
        yield (
            "commit-outside",
            {d.address + 16: last - d.start_ip}
            if last > d.start_ip
            else "the section is one instruction: ending it earlier empties it",
        )
        late = _late_start(insns)
        yield (
            "late-start",
            late
            if isinstance(late, str)
            else {d.address + 8: late[0], d.address + 16: end - late[0]},
        )
    abort = _instructions(image, cs, d.abort_ip, d.abort_ip + 16)
    signature = SIGNATURES.get(image.machine)
    if not abort:
        yield "bad-signature", f"no instruction decodes at abort_ip {d.abort_ip:#x}"
        return
    moved = d.abort_ip + abort[0].size
    before = image.read(moved - 4, 4)
    if before is None or int.from_bytes(before, "little" if image.little else "big") == signature:
        yield "bad-signature", "the signature also precedes the next instruction"
    else:
        yield "bad-signature", {d.address + 24: moved}


def _describe(kind: str, d: Descriptor, fields: dict[int, int]) -> str:
    names = {8: "start_ip", 16: "post_commit_offset", 24: "abort_ip"}
    old = {8: d.start_ip, 16: d.post_commit_offset, 24: d.abort_ip}
    return ", ".join(
        f"{names[a - d.address]} {old[a - d.address]:#x} -> {v:#x}" for a, v in fields.items()
    )


def _targets(image: _Image, insn: Any, pages: dict[int, int]) -> Iterator[int]:
    """Addresses ``insn`` refers to: branch targets, RIP-relative operands, adrp+add pairs."""
    import capstone

    for op in insn.operands:
        if op.type == capstone.CS_OP_IMM and (
            insn.group(capstone.CS_GRP_JUMP) or insn.group(capstone.CS_GRP_CALL)
        ):
            yield int(op.imm)
        elif (
            op.type == capstone.CS_OP_MEM
            and image.machine == "EM_X86_64"
            and insn.reg_name(op.mem.base) == "rip"
        ):
            yield insn.address + insn.size + int(op.mem.disp)
    if image.machine == "EM_AARCH64":
        yield from _aarch64_targets(insn, pages)


def _aarch64_targets(insn: Any, pages: dict[int, int]) -> Iterator[int]:
    """adrp/adr/add chains: a register's address is yielded when it is replaced (and at
    the function's end, ``flush``), not at each step, so ``adrp; add; add`` yields
    only the final address."""
    import capstone

    ops = insn.operands
    regs = [op.reg for op in ops if op.type == capstone.CS_OP_REG]
    for op in ops:
        if op.type == capstone.CS_OP_MEM and op.mem.base in pages:
            yield pages[op.mem.base] + int(op.mem.disp)
    if insn.mnemonic in ("adrp", "adr") and len(ops) == 2:
        if ops[0].reg in pages:
            yield pages.pop(ops[0].reg)
        pages[ops[0].reg] = int(ops[1].imm)
    elif (
        insn.mnemonic == "add"
        and len(ops) == 3
        and ops[1].type == capstone.CS_OP_REG
        and ops[1].reg in pages
        and ops[2].type == capstone.CS_OP_IMM
    ):
        value = pages[ops[1].reg] + int(ops[2].imm)
        if ops[0].reg != ops[1].reg and ops[0].reg in pages:
            yield pages.pop(ops[0].reg)
        pages[ops[0].reg] = value
    elif regs and regs[0] in pages and insn.mnemonic not in ("str", "stp", "cmp", "cbz", "cbnz"):
        yield pages.pop(regs[0])


def _objects(image: _Image) -> list[tuple[int, int]]:
    from elftools.elf.sections import SymbolTableSection

    table = image.elf.get_section_by_name(".symtab") or image.elf.get_section_by_name(".dynsym")
    if not isinstance(table, SymbolTableSection):
        return []
    return sorted(
        {
            (int(sym["st_value"]), int(sym["st_size"]))
            for sym in table.iter_symbols()
            if sym["st_info"]["type"] == "STT_OBJECT" and sym["st_value"] and sym["st_size"]
        }
    )


def reached_functions(image: _Image, cs: Any, symbol: str) -> set[int] | None:
    """Start addresses of the functions reachable from ``symbol``: through direct calls
    and jumps, code addresses taken, and code pointers in the data objects referred to
    (the workload table's ``op``...). None when the library has no symbol table for it."""
    by_start = {start: size for start, size, _ in image.functions}
    roots = [start for start, _, name in image.functions if name == symbol]
    if not roots:
        return None
    objects = _objects(image)
    seen: set[int] = set()
    todo = list(roots)
    while todo and len(seen) < 10_000:
        start = todo.pop()
        if start in seen:
            continue
        seen.add(start)
        pages: dict[int, int] = {}
        for insn in _instructions(image, cs, start, start + max(by_start.get(start, 0), 1)):
            for target in _targets(image, insn, pages):
                todo.extend(_functions_behind(image, objects, target))
        for target in pages.values():
            todo.extend(_functions_behind(image, objects, target))
    return seen


def _functions_behind(image: _Image, objects: list[tuple[int, int]], target: int) -> list[int]:
    """The function holding ``target``, or those a data object at ``target`` points at."""
    sec = image.section_at(target)
    if sec is None:
        return []
    if _is_exec(sec):
        return [start for start, size, _ in image.functions if start <= target < start + size]
    lo, hi = target, target + 8
    for start, size in objects:
        if start <= target < start + size:
            lo, hi = start, start + size
    found = []
    for address in range(lo - lo % 8, hi, 8):
        if image.code_pointer(address):
            raw = image.read(address, 8)
            value = image.word(address, raw) if raw is not None else None
            if value is not None:
                found += [s for s, size, _ in image.functions if s <= value < s + max(size, 1)]
    return found


def mutants(
    path: str | Path, out_dir: str | Path | None = None, *, symbol: str | None = None
) -> list[Mutant]:
    """Write mutated copies of the library at ``path``: every class for every descriptor.

    Args:
        path: a shared library with rseq critical sections (x86_64 or aarch64).
        out_dir: where the copies go (created if missing); default: a new
            temporary folder. Files are named ``<stem>.<class>.<function>.so``.
        symbol: when given, only the descriptors whose section lies in code
            reachable from this workload symbol (direct calls, the workload
            table's function pointers); all of them when the library has no
            symbol table to follow.

    Returns:
        One :class:`Mutant` per descriptor and class (``CLASSES``), in
        descriptor order; those that could not be made have ``path=None`` and
        a ``reason``. Empty when the library has no descriptor.

    Raises:
        ValueError: ``path`` is missing, not a linked ELF file, or of an
            architecture without a disassembler here.
    """
    _, fh, elf = _open(path)
    source = Path(path)
    with fh:
        image = _Image(elf)
        cs = _capstone(image.machine)
        out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="rseq-mut-"))
        out.mkdir(parents=True, exist_ok=True)
        patcher = _Patcher(image, source, out)
        made: list[Mutant] = []
        reached = reached_functions(image, cs, symbol) if symbol else None
        for d in find_descriptors(image):
            if reached is not None and not any(
                start <= d.start_ip < start + size
                for start, size, _ in image.functions
                if start in reached
            ):
                continue
            function = image.function_at(d.start_ip)
            for kind, plan in _plans(image, cs, d):
                base = Mutant(kind, d.label, d.address, function, source, None)
                if isinstance(plan, str):
                    made.append(replace(base, reason=plan))
                    continue
                patches: dict[int, bytes] = {}
                why = next((w for a, v in plan.items() if (w := patcher.word(a, v, patches))), None)
                if why:
                    made.append(replace(base, reason=why))
                    continue
                target = patcher.write(_file_name(source.stem, kind, d, function), patches)
                made.append(replace(base, path=target, change=_describe(kind, d, plan)))
        return made
