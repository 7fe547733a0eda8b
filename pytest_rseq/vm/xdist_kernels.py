"""``--rseq-kernel``/``--rseq-arch`` in pytest: every selected test on every kernel, via xdist.

Each kernel becomes one pytest-xdist worker whose interpreter runs inside the
guest: an execnet ``popen`` gateway whose ``python=`` is
``python -m pytest_rseq.vm.gateway KERNEL`` (``gateway.py``), which boots the
kernel with virtme-ng and carries execnet's bytes over the guest command's
stdin and stdout. The host is one more worker (``id=host``), and
``--dist each`` sends every test to every worker. The worker id is the
kernel's label, so ``-v`` rows read ``[6.1.0-57-amd64] PASSED ...`` and the
rseq summary names the worker of each run. ``--rseq-arch`` guests cannot carry
a worker; they run pytest inside and their reports are merged (``guest_pytest.py``).
"""

from __future__ import annotations

import pytest

from .targets import ARCHES, split_values

HELP_KERNEL = (
    "also run every selected test in a VM booting this kernel (a vmlinuz path or a Debian "
    "version such as 6.1.0-57-amd64; repeatable or comma list); one xdist worker per kernel "
    "plus the host, --dist each (needs the [vm] extra, QEMU and udev)"
)
HELP_ARCH = (
    f"also run every selected test in a VM of this architecture ({', '.join(ARCHES)}): pytest "
    "runs there after the host's tests and its reports join this session's"
)
HELP_V2_ONLY = "boot the --rseq-kernel guests with cgroup_no_v1=all (cgroup v2 only)"


def add_options(parser: pytest.Parser) -> None:
    """``--rseq-kernel``, ``--rseq-arch`` and ``--rseq-vm-cgroup-v2-only`` (command line only)."""
    group = parser.getgroup("rseq")
    group.addoption("--rseq-kernel", action="append", default=[], metavar="IMAGE",
                    help=HELP_KERNEL)  # fmt: skip
    group.addoption("--rseq-arch", action="append", default=[], metavar="ARCH", help=HELP_ARCH)
    group.addoption("--rseq-vm-cgroup-v2-only", action="store_true", default=False,
                    help=HELP_V2_ONLY)  # fmt: skip


def _label(value: str) -> str:
    from .targets import x86_target

    return x86_target(value, cgroup_v2_only=False).label


def gateway_specs(kernel_values: list[str], *, cgroup_v2_only: bool = False) -> list[str]:
    """The ``--tx`` specs: the host, then one VM worker per kernel (ids are the labels).

    Raises:
        pytest.UsageError: a value that would break a spec (``//`` in it).
    """
    from .gateway import spec_python

    specs = ["popen//id=host"]
    for value in kernel_values:
        if "//" in value:
            raise pytest.UsageError(f"--rseq-kernel: invalid value {value!r}: '//' in a path")
        label = _label(value).replace(" ", "-")
        python = spec_python(value, cgroup_v2_only=cgroup_v2_only)
        specs.append(f"popen//id={label}//python={python}")
    return specs


def configure(config: pytest.Config) -> None:
    """Before xdist starts (``pytest_cmdline_main``, tryfirst): add the VM workers.

    Raises:
        pytest.UsageError: xdist is off, ``-n`` is also given, or an unknown arch.
    """
    if hasattr(config, "workerinput"):
        return
    kernels = split_values(config.getoption("--rseq-kernel") or [])
    arches = split_values(config.getoption("--rseq-arch") or [])
    if not kernels and not arches:
        return
    for arch in arches:
        if arch not in ARCHES:
            raise pytest.UsageError(
                f"--rseq-arch: invalid value {arch!r}: expected one of {', '.join(ARCHES)}"
            )
    if arches:
        from .guest_pytest import GuestSessions
        from .targets import targets

        config.pluginmanager.register(GuestSessions(config, targets([], arches)), "rseq-guests")
    if not kernels:
        return
    if not config.pluginmanager.hasplugin("xdist"):
        raise pytest.UsageError("--rseq-kernel needs pytest-xdist active (drop -p no:xdist)")
    if getattr(config.option, "numprocesses", None):
        raise pytest.UsageError("--rseq-kernel makes its own workers: drop -n")
    v2 = bool(config.getoption("--rseq-vm-cgroup-v2-only"))
    config.option.tx = [*(config.option.tx or []), *gateway_specs(kernels, cgroup_v2_only=v2)]
    config.option.dist = "each"
