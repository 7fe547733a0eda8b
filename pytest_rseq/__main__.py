"""``python -m pytest_rseq``: the environment gate.

Prints the fingerprint, runs the scenario suite (``pytest_rseq.gate``), prints
a table with a verdict per scenario and overall, and exits 0 (pass), 1
(fail) or 2 (could not test). ``--block-rseq ENOSYS|EPERM`` first installs a
seccomp filter that makes the rseq syscall fail and re-executes the gate, as
a container profile that blocks rseq would start it.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from . import gate
from ._version import __version__
from .gate import report
from .vm import cli as vm_cli

BLOCK_ERRNOS = {"ENOSYS": errno.ENOSYS, "EPERM": errno.EPERM}
BLOCKED_ENV = "PYTEST_RSEQ_GATE_BLOCKED"
EXIT_USAGE = 64
"""A bad command line (argparse's own 2 would read as "could not test")."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The gate's command line (no abbreviations: the re-exec rebuilds it exactly)."""
    parser = _Parser(
        allow_abbrev=False,
        prog="python -m pytest_rseq",
        description="Environment gate: does rseq work here? Exit 0 pass, 1 fail, 2 could not test.",
    )
    parser.add_argument("--quick", action="store_true", help="short runs (under 30 s on 2 CPUs)")
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON to PATH")
    parser.add_argument(
        "--only",
        metavar="TEXT",
        action="append",
        default=[],
        help="run only scenarios whose name contains TEXT (repeatable)",
    )
    parser.add_argument(
        "--allow-hotplug",
        action="store_true",
        help="also run the CPU hotplug scenario (takes a CPU offline; root only)",
    )
    parser.add_argument(
        "--require",
        metavar="NAME[,NAME]",
        action="append",
        default=[],
        help="exit 2 unless these scenarios (e.g. cpuset, hotplug, perf, injector/cpuset) "
        "passed; by default a NOT TESTED extra does not change the exit code (repeatable)",
    )
    parser.add_argument("--seed", type=int, help="seed of every run (default: random)")
    parser.add_argument(
        "--block-rseq",
        choices=sorted(BLOCK_ERRNOS),
        help="run the gate with the rseq syscall blocked by seccomp before exec",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    vm_cli.add_arguments(parser)
    parser.add_argument("--version", action="version", version=f"pytest-rseq {__version__}")
    return parser.parse_args(argv)


def _argv_without_block(args: argparse.Namespace) -> list[str]:
    """The command line of ``args`` minus ``--block-rseq``, rebuilt from the parsed values."""
    argv = [
        flag
        for flag, on in (
            ("--quick", args.quick),
            ("--allow-hotplug", args.allow_hotplug),
            ("--list", args.list),
        )
        if on
    ]
    if args.json:
        argv += ["--json", args.json]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    for text in args.only:
        argv += ["--only", text]
    for text in args.require:
        argv += ["--require", text]
    return argv + vm_cli.target_argv(args)


def reexec_blocked(name: str, args: argparse.Namespace) -> int:
    """Install the rseq-blocking filter, then exec the gate again without ``--block-rseq``."""
    from ._native import load

    rc = load()[1].prseq_block_rseq(BLOCK_ERRNOS[name])
    if rc < 0:
        sys.stderr.write(f"pytest-rseq: cannot install the seccomp filter: {os.strerror(-rc)}\n")
        return gate.EXIT_COULD_NOT_TEST
    os.environ[BLOCKED_ENV] = name
    os.execv(sys.executable, [sys.executable, "-m", "pytest_rseq", *_argv_without_block(args)])
    return gate.EXIT_COULD_NOT_TEST  # not reached


def print_outcome(outcome: gate.Outcome) -> None:
    """One progress line per finished scenario."""
    print(f"  {outcome.verdict:<10}  {outcome.name:<31} {outcome.seconds:5.1f} s  {outcome.detail}")
    sys.stdout.flush()


def table(outcomes: list[gate.Outcome]) -> list[str]:
    """The verdict table."""
    rows = []
    for o in outcomes:
        r = o.result or {}
        rows.append(
            [
                o.name,
                o.what,
                o.verdict,
                r.get("path", "-"),
                r.get("registration", "-"),
                r.get("ops_per_s", "-"),
                r.get("aborts", "-"),
            ]
        )
    headers = ["scenario", "what", "verdict", "path", "registration", "ops/s", "aborts"]
    return report.format_table(headers, rows)


def print_header(args: argparse.Namespace, fp: dict[str, Any]) -> str | None:
    """Print the gate's title and the host fingerprint; return the verdict when the host
    cannot be tested at all (no native core, probing failed), else None."""
    print(f"pytest-rseq {__version__} environment gate" + (" (quick)" if args.quick else ""))
    for line in report.fingerprint_lines(fp):
        print(f"  {line}")
    if os.environ.get(BLOCKED_ENV):
        print(f"  started with rseq blocked by seccomp ({os.environ[BLOCKED_ENV]}) before exec")
    for key, why in (("native_error", "no native core"), ("probe_error", "probing failed")):
        if key in fp:
            print(f"COULD NOT TEST: {fp[key]}")
            return f"COULD NOT TEST: {why}"
    if not fp.get("rseq_available"):
        errname = errno.errorcode.get(int(fp.get("syscall_errno") or 0), "?")
        print(
            f"  rseq is UNAVAILABLE here (the syscall fails with {errname}): "
            "only the fallback path can be tested"
        )
    print()
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the gate; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    # `python -m pytest_rseq | head` ends quietly, like other command-line tools.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        required = gate.resolve_required(
            [n.strip() for text in args.require for n in text.split(",") if n.strip()],
            len(os.sched_getaffinity(0)),
        )
    except ValueError as exc:
        sys.stderr.write(f"python -m pytest_rseq: error: {exc}\n")
        return EXIT_USAGE
    if args.block_rseq and not os.environ.get(BLOCKED_ENV):
        return reexec_blocked(args.block_rseq, args)
    if args.list:
        for s in gate.scenarios(len(os.sched_getaffinity(0))):
            print(f"{s.name:<31} {s.what}" + (f"  (opt-in: {s.opt_in})" if s.opt_in else ""))
        return gate.EXIT_PASS
    fp = report.host_fingerprint()
    untestable = print_header(args, fp)
    if untestable:
        return _finish(args, fp, [], gate.EXIT_COULD_NOT_TEST, untestable, 0)
    start = time.monotonic()
    allow = ["--allow-hotplug"] if args.allow_hotplug else []
    outcomes = gate.run_gate(
        quick=args.quick,
        allow=allow,
        only=args.only,
        seed=args.seed,
        fingerprint=fp,
        on_outcome=print_outcome,
    )
    code, verdict = gate.overall(outcomes, bool(fp.get("rseq_available")), required)
    print()
    for line in table(outcomes):
        print(line)
    print()
    for o in outcomes:
        if o.verdict in (gate.SKIP, gate.NOT_TESTED, gate.NA):
            print(f"{o.verdict.lower()}: {o.name}: {o.detail}")
    if args.only:
        verdict += f" (only the scenarios matching {', '.join(args.only)})"
    print(f"gate: {verdict}  ({time.monotonic() - start:.1f} s, exit {code})")
    seconds = time.monotonic() - start
    if not vm_cli.wanted(args):
        return _finish(args, fp, outcomes, code, verdict, seconds)
    host = vm_cli.host_column(fp, outcomes, code, verdict, seconds)
    matrix_code, columns = vm_cli.run(args, host)
    return _finish(args, fp, outcomes, matrix_code, verdict, seconds, vm_cli.json_targets(columns))


def _finish(
    args: argparse.Namespace,
    fp: dict[str, Any],
    outcomes: list[gate.Outcome],
    code: int,
    verdict: str,
    seconds: float,
    extra: dict[str, Any] | None = None,
) -> int:
    if args.json:
        doc = {
            "pytest_rseq": __version__,
            "quick": args.quick,
            "only": args.only,
            "require": args.require,
            "blocked_before_exec": os.environ.get(BLOCKED_ENV),
            "rseq_available": bool(fp.get("rseq_available")),
            "exit_code": code,
            "verdict": verdict,
            "seconds": round(seconds, 3),
            "fingerprint": fp,
            "scenarios": [o.to_dict() for o in outcomes],
            **(extra or {}),
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"JSON report: {path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
