"""The gate on several kernels: one column per target, the host first.

Each guest runs ``python -m pytest_rseq`` with the host's gate options and
writes its JSON report to ``$PRSEQ_GUEST_OUT/gate.json``; the host reads it
back into a ``Column``. A target that cannot start (no QEMU, no virtme-ng,
an image that cannot be fetched) is a column with the reason and exit code
2. The combined exit code is 1 if any column failed, else 2 if any could not
test, else 0.
"""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import gate
from ..gate import report
from .guest import OUT_ENV, GuestResult, GuestUnavailable
from .targets import Target

REPORT_NAME = "gate.json"
GUEST_TIMEOUT_S = 1200.0
"""Boot plus the gate under TCG; a guest past this is killed and its column fails."""
OUTPUT_TAIL_LINES = 15


@dataclass
class Column:
    """One target's gate result (``unavailable`` set when it could not run at all)."""

    label: str
    arch: str
    exit_code: int
    verdict: str
    fingerprint: dict[str, Any] = field(default_factory=dict)
    scenarios: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    unavailable: str | None = None

    @property
    def cgroup(self) -> str:
        """The cgroup version the cpuset scenarios used, in words."""
        version = self.fingerprint.get("cgroup_version")
        if version is None:
            return "-"
        return f"v{version}" + ("" if self.fingerprint.get("cpuset_writable") else " (no cpuset)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``cgroup_version`` lifted out of the fingerprint)."""
        data = asdict(self)
        data["kernel"] = self.fingerprint.get("kernel")
        data["cgroup_version"] = self.fingerprint.get("cgroup_version")
        data["seconds"] = round(self.seconds, 1)
        return data


def host_column(
    fp: dict[str, Any], outcomes: Sequence[gate.Outcome], code: int, verdict: str, seconds: float
) -> Column:
    """The host's own gate run as a column."""
    return Column(
        label=f"host {fp.get('kernel', '')}".strip(),
        arch=str(fp.get("machine", "")),
        exit_code=code,
        verdict=verdict,
        fingerprint=fp,
        scenarios=[o.to_dict() for o in outcomes],
        seconds=seconds,
    )


def guest_command(python: str, gate_args: Sequence[str]) -> str:
    """The shell command that runs the gate in a guest, its JSON into the out folder."""
    args = " ".join(shlex.quote(a) for a in gate_args)
    return f'{shlex.quote(python)} -m pytest_rseq {args} --json "${OUT_ENV}/{REPORT_NAME}"'.replace(
        "  ", " "
    )


def _tail(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " / ".join(lines[-OUTPUT_TAIL_LINES:])


def column_from_result(label: str, arch: str, result: GuestResult) -> Column:
    """Read the gate's JSON from a finished guest run (a missing report is a column that failed
    to test, with the guest's last output lines as the reason)."""
    path = result.out_dir / REPORT_NAME
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return Column(
            label, arch, gate.EXIT_COULD_NOT_TEST,
            f"COULD NOT TEST: the guest gate left no report ({type(exc).__name__}; "
            f"exit {result.returncode}): {_tail(result.output)}",
            seconds=result.wall_s,
        )  # fmt: skip
    code = int(doc.get("exit_code", gate.EXIT_COULD_NOT_TEST))
    if code == gate.EXIT_PASS and result.returncode != gate.EXIT_PASS:
        # The report says pass but the gate process did not: not a pass.
        code = gate.EXIT_COULD_NOT_TEST
    return Column(
        label=label,
        arch=arch,
        exit_code=code,
        verdict=str(doc.get("verdict", "")),
        fingerprint=doc.get("fingerprint") or {},
        scenarios=doc.get("scenarios") or [],
        seconds=result.wall_s,
    )


def run_target(
    target: Target, gate_args: Sequence[str], timeout_s: float = GUEST_TIMEOUT_S
) -> tuple[Column, GuestResult | None]:
    """Build the guest, run the gate in it, read its report; never raises ``GuestUnavailable``."""
    try:
        guest = target.make()
        guest.check()
        result = guest.run(guest_command(guest.python, gate_args), timeout_s=timeout_s)
    except GuestUnavailable as exc:
        why = f"COULD NOT START: {exc}"
        return Column(target.label, "", gate.EXIT_COULD_NOT_TEST, why, unavailable=str(exc)), None
    try:
        return column_from_result(guest.label, guest.arch, result), result
    finally:
        shutil.rmtree(result.out_dir, ignore_errors=True)


def combined_exit(columns: Sequence[Column]) -> int:
    """1 if any column failed, else 2 if any could not test, else 0."""
    codes = {c.exit_code for c in columns}
    if gate.EXIT_FAIL in codes:
        return gate.EXIT_FAIL
    if codes - {gate.EXIT_PASS}:
        return gate.EXIT_COULD_NOT_TEST
    return gate.EXIT_PASS


def _cell(col: Column, name: str) -> str:
    for s in col.scenarios:
        if s.get("name") == name:
            return str(s.get("verdict"))
    return "-"


def feature_size(fp: dict[str, Any]) -> str:
    """The kernel's rseq feature size as a cell: a kernel before 6.3 has no
    ``AT_RSEQ_FEATURE_SIZE`` (0 in the fingerprint), and its area is the original 20 bytes."""
    size = fp.get("feature_size")
    if size is None:
        return "-"
    if not size and fp.get("rseq_available"):
        return "20 (no AT_RSEQ_FEATURE_SIZE)"
    return str(size)


def matrix_table(columns: Sequence[Column]) -> list[str]:
    """One row per scenario (in the order first seen), one column per target."""
    names: list[str] = []
    for col in columns:
        names += [str(s["name"]) for s in col.scenarios if s.get("name") not in names]
    rows: list[list[Any]] = [
        ["kernel", *[c.fingerprint.get("kernel", "-") for c in columns]],
        ["glibc", *[c.fingerprint.get("glibc", "-") for c in columns]],
        ["feature size", *[feature_size(c.fingerprint) for c in columns]],
        ["cgroup", *[c.cgroup for c in columns]],
        *[[n, *[_cell(c, n) for c in columns]] for n in names],
        ["seconds", *[f"{c.seconds:.0f}" for c in columns]],
        ["exit", *[str(c.exit_code) for c in columns]],
    ]
    return report.format_table(["scenario", *[c.label for c in columns]], rows)


def notes(columns: Sequence[Column]) -> list[str]:
    """Why each non-passing cell or column is so (unavailable targets first)."""
    lines = [f"{c.label}: {c.verdict}" for c in columns if c.unavailable]
    for col in columns:
        for s in col.scenarios:
            if s.get("verdict") not in (gate.PASS, gate.OFF):
                lines.append(f"{col.label}: {str(s.get('verdict')).lower()}: {s['name']}: "
                             f"{s.get('detail')}")  # fmt: skip
    return lines


def run_matrix(
    targets: Sequence[Target],
    gate_args: Sequence[str],
    host: Column,
    *,
    on_start: Callable[[Target], None] = lambda t: None,
    on_done: Callable[[Column, GuestResult | None], None] = lambda c, r: None,
    timeout_s: float = GUEST_TIMEOUT_S,
) -> list[Column]:
    """The host column plus one column per target, each guest run in turn."""
    columns = [host]
    for target in targets:
        on_start(target)
        column, result = run_target(target, gate_args, timeout_s)
        on_done(column, result)
        columns.append(column)
    return columns
