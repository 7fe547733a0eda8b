"""The gate's ``--kernel``/``--arch`` part: options, the guest runs, the matrix output.

``python -m pytest_rseq --quick --kernel 6.1.0-57-amd64 --kernel IMAGE`` runs
the host's gate as usual, then the same gate in a guest per target, and
prints one table with a column per target (the host first).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .guest import GuestResult
from .matrix import Column, combined_exit, host_column, matrix_table, notes, run_matrix
from .targets import ARCHES, Target, targets

__all__ = ["add_arguments", "guest_gate_args", "host_column", "json_targets", "run", "wanted"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--kernel``, ``--arch`` and ``--vm-cgroup-v2-only`` to the gate's parser."""
    parser.add_argument(
        "--kernel",
        metavar="IMAGE",
        action="append",
        default=[],
        help="also run the gate in a VM booting IMAGE: a vmlinuz path or a Debian kernel "
        "version such as 6.1.0-57-amd64, fetched into the cache (repeatable, or comma list)",
    )
    parser.add_argument(
        "--arch",
        action="append",
        default=[],
        choices=ARCHES,
        help="also run the gate in a VM of this architecture (repeatable)",
    )
    parser.add_argument(
        "--vm-quick",
        action="store_true",
        help="in the VMs run only the scenarios that differ between kernels "
        f"({', '.join(VM_QUICK)}): an emulated guest runs each scenario in 10-30 s",
    )
    parser.add_argument(
        "--vm-cgroup-v2-only",
        action="store_true",
        help="boot the x86_64 guests with cgroup_no_v1=all (cpusets on cgroup v2 only)",
    )


VM_QUICK = (
    "registration/auto",
    "injector/cpuset",
    "path/both-mm_cid",
    "invariants/mm_cid",
    "canary/racy",
    "canary/bad-signature",
)
"""What ``--vm-quick`` runs in each guest (``--only`` values)."""


def wanted(args: argparse.Namespace) -> bool:
    """Whether the command line asks for any guest."""
    return bool(args.kernel or args.arch)


def guest_gate_args(args: argparse.Namespace) -> list[str]:
    """The gate options a guest repeats (everything but the JSON path and the targets)."""
    out = [flag for flag, on in (("--quick", args.quick), ("--allow-hotplug", args.allow_hotplug))
           if on]  # fmt: skip
    if args.seed is not None:
        out += ["--seed", str(args.seed)]
    for text in args.only or (VM_QUICK if args.vm_quick else ()):
        out += ["--only", text]
    for text in args.require:
        out += ["--require", text]
    if args.block_rseq:
        out += ["--block-rseq", args.block_rseq]
    return out


def target_argv(args: argparse.Namespace) -> list[str]:
    """The target options as a command line (for the ``--block-rseq`` re-exec)."""
    out = [f"--kernel={k}" for k in args.kernel] + [f"--arch={a}" for a in args.arch]
    flags = (("--vm-quick", args.vm_quick), ("--vm-cgroup-v2-only", args.vm_cgroup_v2_only))
    return out + [flag for flag, on in flags if on]


def _on_start(target: Target) -> None:
    print(f"\n=== {target.label}: booting the guest (QEMU TCG) and running the gate in it")
    sys.stdout.flush()


def _on_done(column: Column, result: GuestResult | None) -> None:
    if result is not None:
        for line in result.output.rstrip().splitlines():
            print(f"  | {line}")
    took = f"{column.seconds:.0f} s, exit {column.exit_code}"
    print(f"=== {column.label}: {column.verdict}  ({took})")
    sys.stdout.flush()


def run(args: argparse.Namespace, host: Column) -> tuple[int, list[Column]]:
    """Run every requested guest after the host; print the matrix; return exit code and columns."""
    chosen = targets(args.kernel, args.arch, cgroup_v2_only=args.vm_cgroup_v2_only)
    columns = run_matrix(chosen, guest_gate_args(args), host, on_start=_on_start, on_done=_on_done)
    print()
    for line in matrix_table(columns):
        print(line)
    print()
    for line in notes(columns):
        print(line)
    code = combined_exit(columns)
    print(f"matrix: exit {code} ({', '.join(f'{c.label} {c.exit_code}' for c in columns)})")
    return code, columns


def json_targets(columns: list[Column]) -> dict[str, Any]:
    """The ``targets`` entry of the gate's JSON report."""
    return {"targets": [c.to_dict() for c in columns]}
