"""The contract between the gate/plugin and a virtual machine that runs a command.

A guest boots a kernel, runs one shell command inside it, and hands back the
exit status, the output, and the files the command wrote under the folder the
environment variable ``PRSEQ_GUEST_OUT`` names inside the guest. Every guest
kind (an x86_64 kernel image booted with virtme-ng, an arm64 system image)
implements ``Guest``; callers never see QEMU command lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

OUT_ENV = "PRSEQ_GUEST_OUT"
"""Inside the guest: the folder whose files come back in ``GuestResult.out_dir``."""


class GuestUnavailable(RuntimeError):
    """No VM can be started here; the message says exactly why (no QEMU, no
    virtme-ng, the kernel image missing, root needed) and what to install."""


@dataclass(frozen=True)
class GuestResult:
    """What one command run inside a guest left behind."""

    returncode: int
    """The command's exit status inside the guest (not QEMU's)."""
    output: str
    """The command's stdout and stderr as the guest console carried them."""
    out_dir: Path
    """Host folder holding the files the command wrote under ``$PRSEQ_GUEST_OUT``."""
    wall_s: float
    """Seconds from starting the VM to its end, boot included."""


class Guest(Protocol):
    """One bootable guest: an architecture plus a kernel image."""

    arch: str
    """``x86_64`` or ``aarch64``."""
    label: str
    """Short column title for tables, e.g. ``6.1.0-27-amd64`` or ``aarch64 6.1.0-27``."""
    python: str
    """The interpreter command that runs pytest-rseq inside the guest."""

    def check(self) -> None:
        """Raise ``GuestUnavailable`` with the reason if this guest cannot boot here."""

    def run(self, command: str, *, timeout_s: float) -> GuestResult:
        """Boot, run ``command`` with ``sh -c`` in the guest, power off; never leave a VM behind."""
