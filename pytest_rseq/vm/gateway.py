"""An interpreter command whose Python runs inside a guest, for execnet/xdist gateways.

``python -m pytest_rseq.vm.gateway KERNEL [-- PYTHON-ARGS...]`` boots the
x86_64 guest for ``KERNEL`` (a vmlinuz path or a Debian version) and runs
the host's interpreter inside it with ``PYTHON-ARGS`` (execnet's ``-u -c
<bootstrap>``), with this process's stdin and stdout as the guest command's
stdin and stdout. So ``--tx 'popen//id=6.1//python=python -m
pytest_rseq.vm.gateway 6.1.0-57-amd64'`` makes an xdist worker that runs in
the VM; ``--rseq-kernel`` builds exactly these specs. Boot noise and errors
go to stderr; the guest's stdout carries only the interpreter's bytes.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

from . import kernels
from .guest import GuestUnavailable
from .x86 import X86Guest


def spec_python(value: str, *, cgroup_v2_only: bool = False) -> str:
    """The ``python=`` part of a popen spec that runs the interpreter in the guest of ``value``."""
    extra = ["--cgroup-v2-only"] if cgroup_v2_only else []
    return " ".join(
        shlex.quote(a) for a in [sys.executable, "-m", "pytest_rseq.vm.gateway", *extra, value]
    )


def main(argv: list[str] | None = None) -> int:
    """Boot the guest, run the interpreter command in it on this stdin/stdout; its status."""
    args = list(sys.argv[1:] if argv is None else argv)
    cgroup_v2_only = "--cgroup-v2-only" in args
    args = [a for a in args if a != "--cgroup-v2-only"]
    if not args:
        sys.stderr.write("usage: python -m pytest_rseq.vm.gateway KERNEL [PYTHON-ARGS...]\n")
        return 64
    value, python_args = args[0], [a for a in args[1:] if a != "--"]
    try:
        guest = X86Guest(kernels.resolve(value), cgroup_v2_only=cgroup_v2_only)
        guest.check()
    except GuestUnavailable as exc:
        sys.stderr.write(f"pytest-rseq: cannot start the guest for {value!r}: {exc}\n")
        return 2
    command = " ".join(shlex.quote(a) for a in [guest.python, *python_args])
    out = guest.prepare_out()
    try:
        # The guest's stdout carries only the interpreter's bytes: no redirect, no status file.
        script = out / "gateway.sh"
        script.write_text(guest.setup_lines(out) + f"exec {command}\n")
        return subprocess.call(guest.vng_argv(script), env=guest.vng_env())
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
