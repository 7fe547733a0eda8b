"""From command-line values (``--kernel``, ``--arch``) to guests.

A kernel value is a vmlinuz path or a Debian kernel version (fetched into
the cache by ``kernels.resolve``); values may repeat or be comma separated.
``--arch aarch64`` adds the arm64 guest, whose module is imported only then.
Building a guest may fail (an image that cannot be fetched, no arm64 guest
in this version): ``Target.make`` raises ``GuestUnavailable`` with the
reason, and the runner turns that into a column that could not be tested.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from . import kernels
from .guest import Guest, GuestUnavailable

ARCHES = ("aarch64",)
"""Values of ``--arch`` (the host architecture needs none)."""
ARM64_MODULE = "pytest_rseq.vm.arm64"


@dataclass(frozen=True)
class Target:
    """One requested guest, before it is built: a label and how to build it."""

    label: str
    make: Callable[[], Guest]


def split_values(values: Iterable[str]) -> list[str]:
    """Repeated and comma-separated values, in order, without blanks or repeats."""
    out: list[str] = []
    for value in values:
        for part in (p.strip() for p in value.split(",")):
            if part and part not in out:
                out.append(part)
    return out


def _label(value: str) -> str:
    name = Path(value).name
    return name.split("vmlinuz-", 1)[1] if name.startswith("vmlinuz-") else name


def x86_target(value: str, *, cgroup_v2_only: bool, cache_dir: Path | None = None) -> Target:
    """The x86_64 guest booting kernel ``value`` (a vmlinuz path or a Debian version)."""

    def make() -> Guest:
        from .x86 import X86Guest

        return X86Guest(kernels.resolve(value, cache_dir), cgroup_v2_only=cgroup_v2_only)

    return Target(_label(value) + (" v2only" if cgroup_v2_only else ""), make)


def arm64_target(kernel: str | None = None, cache_dir: Path | None = None) -> Target:
    """The arm64 guest (its module is imported only when the guest is built)."""

    def make() -> Guest:
        try:
            module = importlib.import_module(ARM64_MODULE)
        except ModuleNotFoundError as exc:
            if exc.name != ARM64_MODULE:
                raise
            raise GuestUnavailable("arm64 guest not built in this version") from None
        guest: Guest = module.Arm64Guest(kernel=kernel, cache_dir=cache_dir)
        return guest

    return Target("aarch64" + (f" {_label(kernel)}" if kernel else ""), make)


def targets(
    kernel_values: Iterable[str],
    arches: Iterable[str] = (),
    *,
    cgroup_v2_only: bool = False,
    cache_dir: Path | None = None,
) -> list[Target]:
    """The guests ``--kernel`` and ``--arch`` ask for, x86_64 kernels first.

    A Debian version ending in ``-arm64`` goes to the arm64 guest; ``--arch
    aarch64`` without one adds the arm64 guest with its default kernel.

    Raises:
        ValueError: an unknown architecture (the message lists the known ones).
    """
    wanted = split_values(arches)
    for arch in wanted:
        if arch not in ARCHES:
            raise ValueError(f"--arch: unknown architecture {arch!r} (known: {', '.join(ARCHES)})")
    out: list[Target] = []
    arm_kernels = []
    for value in split_values(kernel_values):
        if value.endswith("-arm64") and "/" not in value:
            arm_kernels.append(value)
        else:
            out.append(x86_target(value, cgroup_v2_only=cgroup_v2_only, cache_dir=cache_dir))
    out += [arm64_target(k, cache_dir) for k in arm_kernels]
    if "aarch64" in wanted and not arm_kernels:
        out.append(arm64_target(None, cache_dir))
    return out
