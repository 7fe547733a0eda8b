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
from .descriptors import Descriptor, find_descriptors
from .disasm import capstone_for, instructions, late_start, reached_functions
from .image import Image, is_exec, open_image
from .lint import SIGNATURES

CLASSES: tuple[str, ...] = ("unprotected", "commit-outside", "late-start", "bad-signature")
"""The mutant classes, in the order :func:`mutants` makes them."""


@dataclass(frozen=True)
class Mutant:
    """One mutated copy of a library (or the reason it could not be made).

    ``kind`` is the class (``CLASSES``), ``descriptor`` the descriptor's label
    (``__rseq_cs[0] at 0x4060``), ``function`` the symbol + offset of its
    ``start_ip`` (None in a stripped library), ``path`` the mutated copy (None
    when ``reason`` says why it could not be made), ``change`` what was patched,
    ``aim`` the address (ELF virtual address in the library) of the
    instructions where the bug's window is: the commit store, which the
    mutant leaves unprotected and which runs after the section's CPU check
    and loads; for ``late-start`` first the branch after the CPU check, then
    the commit; for ``bad-signature`` the commit, inside the section, so an
    abort reaches the moved ``abort_ip``. In the original library every one
    of them lies inside the section.
    """

    kind: str
    descriptor: str
    address: int
    function: str | None
    original: Path
    path: Path | None
    change: str = ""
    reason: str = ""
    aim: tuple[int, ...] = ()

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


class _Patcher:
    """Writes a patched copy of the library: descriptor words and relocation addends."""

    def __init__(self, image: Image, source: Path, out_dir: Path) -> None:
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


Plan = tuple[str, dict[int, int] | str, tuple[int, ...]]


def _plans(image: Image, cs: Any, d: Descriptor) -> Iterator[Plan]:
    """(class, {field address: new value} or why not, aim addresses) for each class."""
    end = d.start_ip + d.post_commit_offset
    usable = is_exec(image.section_at(d.start_ip)) and 0 < d.post_commit_offset < 2**16 and end > 0
    insns = instructions(image, cs, d.start_ip, end) if usable else []
    whole = bool(insns) and insns[-1].address + insns[-1].size == end
    broken = "the descriptor does not describe a decodable section (lint it)"
    # The commit: the section's last instruction, run after every load it needs.
    commit = (insns[-1].address,) if whole else ()
    yield "unprotected", ({d.address + 16: 0} if usable else broken), commit
    if not whole:
        yield "commit-outside", broken, ()
        yield "late-start", broken, ()
    else:
        last = insns[-1].address
        yield (
            "commit-outside",
            {d.address + 16: last - d.start_ip}
            if last > d.start_ip
            else "the section is one instruction: ending it earlier empties it",
            commit,
        )
        late = late_start(insns)
        if isinstance(late, str):
            yield "late-start", late, ()
        else:
            # The instruction before the new start (the CPU check has run), then
            # the commit: a hit at the first clears rseq_cs, so the op's section
            # runs unprotected and the second lands in a stale op.
            check = max(x.address for x in insns if x.address < late[0])
            yield (
                "late-start",
                {d.address + 8: late[0], d.address + 16: end - late[0]},
                (check, *commit),
            )
    abort = instructions(image, cs, d.abort_ip, d.abort_ip + 16)
    signature = SIGNATURES.get(image.machine)
    if not abort:
        yield "bad-signature", f"no instruction decodes at abort_ip {d.abort_ip:#x}", ()
        return
    moved = d.abort_ip + abort[0].size
    before = image.read(moved - 4, 4)
    if before is None or int.from_bytes(before, "little" if image.little else "big") == signature:
        yield "bad-signature", "the signature also precedes the next instruction", ()
    else:
        yield "bad-signature", {d.address + 24: moved}, commit


def _describe(kind: str, d: Descriptor, fields: dict[int, int]) -> str:
    names = {8: "start_ip", 16: "post_commit_offset", 24: "abort_ip"}
    old = {8: d.start_ip, 16: d.post_commit_offset, 24: d.abort_ip}
    return ", ".join(
        f"{names[a - d.address]} {old[a - d.address]:#x} -> {v:#x}" for a, v in fields.items()
    )


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
    _, fh, elf = open_image(path)
    source = Path(path)
    with fh:
        image = Image(elf)
        cs = capstone_for(image.machine)
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
            for kind, plan, aim in _plans(image, cs, d):
                base = Mutant(kind, d.label, d.address, function, source, None, aim=aim)
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
