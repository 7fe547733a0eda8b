"""An x86_64 guest: a kernel image booted with virtme-ng under QEMU's TCG.

The guest sees the host's filesystem read-only (9p), so the host's own
interpreter (this virtualenv included) is the guest's Python and the
checkout under test is the same path inside. Each ``run`` boots the kernel,
runs one shell command as root, and powers off; a fresh host folder is
shared read-write at the same path and named by ``$PRSEQ_GUEST_OUT``. The
command's output and exit status travel back through files in that folder,
not through the serial console, whose first lines virtme-ng sometimes drops.

KVM is not used (``--disable-kvm``): on hosts where it works TCG is slower
but gives the same answers, and on many cloud VMs nested KVM is missing or
broken. Inside the guest, cgroup2 is mounted at ``/sys/fs/cgroup``; the
guest enables the cpuset controller in its root so the cpuset injector can
run. ``cgroup_v2_only`` boots with ``cgroup_no_v1=all`` as well, so no v1
hierarchy can exist at all.

Requirements on the host: ``qemu-system-x86_64`` (Debian ``qemu-system-x86``),
virtme-ng (``pip install 'pytest-rseq[vm]'``), ``udev`` (without it the
guest's output and exit status are lost) and ``kmod``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.deadlines import GRACE_ENV
from .guest import OUT_ENV, GuestResult, GuestUnavailable

QEMU = "qemu-system-x86_64"
UDEVD = ("/lib/systemd/systemd-udevd", "/usr/lib/systemd/systemd-udevd")
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
STATUS_FILE = ".guest-status"
OUTPUT_FILE = ".guest-output"
SCRIPT_FILE = ".guest-script.sh"
GUEST_CHILD_GRACE_S = 600
"""Start-up allowance of each stress child in the guest (Python over 9p under TCG is slow)."""
NO_STATUS = 255
"""``GuestResult.returncode`` when the command's status never came back (crash, timeout)."""
GUEST_MARK = "prseq_guest=1"
"""On the guest kernel's command line: the setup below acts only where it is present."""

CGROUP_SETUP = f"""\
if grep -qw {GUEST_MARK} /proc/cmdline; then
grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts || mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo +cpuset > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
fi
"""
"""Inside the guest only (never on a host that runs the script by mistake, or under a test's
stand-in vng): cgroup2 at /sys/fs/cgroup with the cpuset controller on for child groups."""


def _default_which(name: str) -> str | None:
    """``shutil.which`` over PATH, this interpreter's bin folder and the sbin folders."""
    path = os.pathsep.join([os.environ.get("PATH", ""), str(Path(sys.executable).parent), *SBIN])
    return shutil.which(name, path=path)


@dataclass
class X86Guest:
    """An x86_64 kernel image (``vmlinuz``) booted with virtme-ng.

    Args:
        kernel: path of the vmlinuz; its modules are found by virtme-ng under
            ``../lib/modules/<version>`` (the layout ``dpkg-deb -x`` leaves).
        cgroup_v2_only: boot with ``cgroup_no_v1=all``.
        cpus: guest CPUs. memory_mb: guest memory.
        which: finds host tools (tests replace it to simulate missing ones).
    """

    kernel: Path
    cgroup_v2_only: bool = False
    cpus: int = 2
    memory_mb: int = 1024
    which: Callable[[str], str | None] = field(default=_default_which, repr=False)
    arch: str = field(default="x86_64", init=False)
    python: str = field(default=sys.executable, init=False)
    label: str = field(default="", init=False)
    """Column title: the kernel version, `` v2only`` in cgroup-v2-only mode."""

    def __post_init__(self) -> None:
        self.label = self.version + (" v2only" if self.cgroup_v2_only else "")

    @property
    def version(self) -> str:
        """The kernel version the image's file name gives (``vmlinuz-<version>``)."""
        name = Path(self.kernel).name
        return name.split("vmlinuz-", 1)[1] if name.startswith("vmlinuz-") else name

    def check(self) -> None:
        """Raise ``GuestUnavailable`` naming what is missing to boot this guest."""
        if self.which(QEMU) is None:
            raise GuestUnavailable(
                f"{QEMU} not found: install QEMU (Debian/Ubuntu: apt-get install qemu-system-x86)"
            )
        if self.which("vng") is None:
            raise GuestUnavailable(
                "virtme-ng (vng) not found: pip install 'pytest-rseq[vm]' "
                "(or pip install virtme-ng) into this environment"
            )
        if not any(Path(p).exists() for p in UDEVD):
            raise GuestUnavailable(
                "udev not installed (no systemd-udevd): apt-get install udev; without it "
                "the guest's output and exit status are lost"
            )
        if self.which("depmod") is None:
            raise GuestUnavailable("kmod not installed (no depmod): apt-get install kmod")
        image = Path(self.kernel)
        if not image.is_file():
            raise GuestUnavailable(f"kernel image {str(image)!r} does not exist")
        if not os.access(image, os.R_OK):
            raise GuestUnavailable(f"kernel image {str(image)!r} is not readable")

    def vng_argv(self, script: Path) -> list[str]:
        """The virtme-ng command line that boots this guest and runs ``script``."""
        vng = self.which("vng") or "vng"
        argv = [
            vng, "-r", str(self.kernel), "--disable-kvm", "--force-9p",
            "--cpus", str(self.cpus), "-m", str(self.memory_mb),
            "--rwdir", str(script.parent), "--cwd", os.getcwd(),
        ]  # fmt: skip
        cmdline = GUEST_MARK + (" cgroup_no_v1=all" if self.cgroup_v2_only else "")
        argv += ["--append", cmdline]
        return [*argv, "--exec", f"sh {shlex.quote(str(script))}"]

    def tool_dir(self) -> str:
        """The folder holding ``vng`` (its helpers are started by name from there)."""
        return str(Path(self.which("vng") or "vng").parent)

    def vng_env(self) -> dict[str, str]:
        """The environment for ``vng``: its own folder and the sbin folders on PATH."""
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([self.tool_dir(), *SBIN, env.get("PATH", "")])
        return env

    @staticmethod
    def prepare_out() -> Path:
        """A new host folder to share read-write with the guest (the caller removes it)."""
        return Path(tempfile.mkdtemp(prefix="pytest-rseq-guest-"))

    @staticmethod
    def setup_lines(out: Path) -> str:
        """The script's first lines: ``$PRSEQ_GUEST_OUT`` and the cgroup setup."""
        return (
            f"export {OUT_ENV}={shlex.quote(str(out))}\n"
            f"export {GRACE_ENV}={GUEST_CHILD_GRACE_S}\n" + CGROUP_SETUP
        )

    def script(self, command: str, out: Path) -> str:
        """The shell script the guest runs: setup, ``command``, its status saved."""
        q = shlex.quote
        return (
            self.setup_lines(out)
            + f"sh -c {q(command)} > {q(str(out / OUTPUT_FILE))} 2>&1 < /dev/null\n"
            + f"echo $? > {q(str(out / STATUS_FILE))}\n"
        )

    def run(self, command: str, *, timeout_s: float) -> GuestResult:
        """Boot, run ``command`` with ``sh -c`` as root in the guest, power off.

        The returned ``out_dir`` is a new folder the caller removes. A guest
        that crashes or passes ``timeout_s`` is killed (its whole process
        group) and reported with ``returncode`` ``NO_STATUS`` and the console.
        """
        self.check()
        out = self.prepare_out()
        script = out / SCRIPT_FILE
        script.write_text(self.script(command, out))
        start = time.monotonic()
        proc = subprocess.Popen(
            self.vng_argv(script),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.vng_env(),
            start_new_session=True,
        )
        try:
            console, _ = proc.communicate(timeout=timeout_s)
            note = ""
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            console, _ = proc.communicate()
            note = f"\n[pytest-rseq: the guest passed its {timeout_s:g} s limit and was killed]"
        except BaseException:
            # Ctrl-C or SIGTERM: the VM is in its own session, so take it down here.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            shutil.rmtree(out, ignore_errors=True)
            raise
        wall = time.monotonic() - start
        text = console.decode(errors="replace") + note
        status_file = out / STATUS_FILE
        try:
            returncode = int(status_file.read_text().strip())
            output = (out / OUTPUT_FILE).read_text(errors="replace")
        except (OSError, ValueError):
            returncode = NO_STATUS
            output = (
                f"[pytest-rseq: no exit status came back from the guest "
                f"(vng exit {proc.returncode}); its console follows]\n{text}"
            )
        for name in (STATUS_FILE, OUTPUT_FILE, SCRIPT_FILE):
            (out / name).unlink(missing_ok=True)
        return GuestResult(returncode=returncode, output=output, out_dir=out, wall_s=wall)
