"""Disassembly for the mutant maker (capstone): instruction boundaries, where a section reads
its CPU, and which functions a workload's entry point reaches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .image import Image, is_exec

# Offsets in struct rseq of the fields a section compares with its CPU.
_CPU_FIELDS = {4: "cpu_id", 24: "mm_cid"}


def capstone_for(machine: str) -> Any:
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


def instructions(image: Image, cs: Any, start: int, end: int) -> list[Any]:
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


def late_start(insns: list[Any]) -> tuple[int, str] | str:
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


def _targets(image: Image, insn: Any, pages: dict[int, int]) -> Iterator[int]:
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


def _objects(image: Image) -> list[tuple[int, int]]:
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


def reached_functions(image: Image, cs: Any, symbol: str) -> set[int] | None:
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
        for insn in instructions(image, cs, start, start + max(by_start.get(start, 0), 1)):
            for target in _targets(image, insn, pages):
                todo.extend(_functions_behind(image, objects, target))
        for target in pages.values():
            todo.extend(_functions_behind(image, objects, target))
    return seen


def _functions_behind(image: Image, objects: list[tuple[int, int]], target: int) -> list[int]:
    """The function holding ``target``, or those a data object at ``target`` points at."""
    sec = image.section_at(target)
    if sec is None:
        return []
    if is_exec(sec):
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
