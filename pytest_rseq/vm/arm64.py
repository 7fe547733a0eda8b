"""An arm64 guest: Debian's cloud-arm64 kernel under ``qemu-system-aarch64`` (TCG).

``qemu-aarch64`` (user mode) cannot test rseq: the syscall returns ENOSYS
there. So the guest is a whole arm64 machine (``-M virt -cpu cortex-a72``)
booting the cached kernel, initramfs and root file system of
:mod:`pytest_rseq.vm.arm64_image`. Each :meth:`Arm64Guest.run` packs a copy
of this pytest-rseq checkout and the command into a small ext4 "job" disk
(``mkfs.ext4 -d``: no loop device, no mount), boots, builds the native core
in the guest with gcc unless a build of the same sources is cached, runs
``sh -c command`` in the checkout, powers off, and reads ``$PRSEQ_GUEST_OUT``
back from the job disk with ``debugfs rdump``. QEMU runs in its own session
and is killed on timeout, on SIGTERM/Ctrl-C and when its parent dies.

``python -m pytest_rseq.vm.arm64 --build`` builds the cache;
``python -m pytest_rseq.vm.arm64 -- COMMAND`` runs one command in the guest.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .._sources import source_hash
from ..host import sigterm
from .arm64_boot import Log
from .arm64_disk import copy_checkout as _copy_checkout
from .arm64_disk import debugfs_rdump as _debugfs_rdump
from .arm64_disk import mkfs as _mkfs
from .arm64_disk import write_dist_info as _write_dist_info
from .arm64_host import apt_knows, foreign_architectures, unreachable
from .arm64_image import (
    DEFAULT_KERNEL,
    Images,
    ImageSpec,
    default_cache_dir,
    ensure_images,
    mirror,
)
from .arm64_rootfs import KEYRING
from .guest import OUT_ENV, GuestResult, GuestUnavailable

QEMU = "qemu-system-aarch64"
GUEST_ROOT = "/job/src"
"""Where the checkout copy lies inside the guest (the command's working directory)."""
_BEGIN = "PRSEQ_GUEST_BEGIN"
_RC = re.compile(r"^PRSEQ_GUEST_RC=(\d+)\s*$", re.M)
_KERNEL_VALUE = re.compile(r"^\d+\.\d+[0-9A-Za-z.+~-]*$")

_RUN_SH = """\
export HOME=/root LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PY_COLORS=0 TERM=dumb
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export {out_env}=/job/out PYTHONPATH={root}:/job/pylib PRSEQ_GUEST_PROJECT=/job/project
# Interpreters start ~20x slower under TCG: more time for a stress child to start.
export PYTEST_RSEQ_CHILD_GRACE_S=${{PYTEST_RSEQ_CHILD_GRACE_S:-120}}
cd {root} || exit 125
BUILD_CORE="import runpy; runpy.run_path('native/build.py')['ffibuilder'].compile(tmpdir='.')"
# As a systemd host delegates it: the cpuset controller enabled for child groups.
echo +cpuset > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
if ! ls pytest_rseq/_prseq*.so >/dev/null 2>&1; then
    start=$(date +%s)
    # cffi compiles in the current folder: sources are named relative to it.
    if ! python3 -c "$BUILD_CORE" >/job/build.log 2>&1; then
        cat /job/build.log
        echo "pytest-rseq: building the native core in the guest failed"
        exit 125
    fi
    mkdir -p /job/built && cp pytest_rseq/_prseq*.so /job/built/
    echo "pytest-rseq: native core built in the guest in $(( $(date +%s) - start )) s" >/job/note
fi
echo {begin}
cat /job/note 2>/dev/null
sh -c "$(cat /job/command)"
"""


def checkout_root() -> Path:
    """The pytest-rseq source checkout this package runs from (it is copied into the guest)."""
    return Path(__file__).resolve().parent.parent.parent


def _kill_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Make the kernel SIGKILL this process (QEMU) when the Python that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


class Arm64Guest:
    """A Debian arm64 guest (cloud kernel ``kernel``) under ``qemu-system-aarch64``."""

    arch = "aarch64"
    python = "python3"

    def __init__(
        self,
        kernel: str | None = None,
        cache_dir: Path | None = None,
        *,
        cpus: int = 2,
        memory_mb: int = 2048,
        project: Path | None = None,
        log: Log | None = None,
    ) -> None:
        """``kernel``: a Debian cloud-arm64 kernel version such as ``6.1.0-57`` or
        ``6.12.117+deb12`` (``-cloud-arm64``/``-arm64`` after it is accepted; the cloud
        flavour boots either way; default ``DEFAULT_KERNEL``); ``cache_dir``: where images
        and builds are kept (default ``$XDG_CACHE_HOME/pytest-rseq/arm64``)."""
        value = kernel or DEFAULT_KERNEL
        for suffix in ("-cloud-arm64", "-arm64"):  # a full kernel release names the same one
            value = value.removesuffix(suffix)
        self.spec = ImageSpec(kernel=value)
        self.cache_dir = cache_dir or default_cache_dir()
        self.images = Images.of(self.spec, self.cache_dir)
        self.label = f"aarch64 {value}"
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.project = project
        """A host folder (your project) copied to ``$PRSEQ_GUEST_PROJECT`` in the guest."""
        self._log = log or (lambda line: print(f"[arm64] {line}", file=sys.stderr, flush=True))

    # -- check ---------------------------------------------------------------------------

    def check(self) -> None:
        """Raise ``GuestUnavailable`` saying exactly what is missing to boot this guest."""
        if not _KERNEL_VALUE.match(self.spec.kernel):
            raise GuestUnavailable(
                f"bad arm64 kernel {self.spec.kernel!r}: give a Debian cloud-arm64 kernel version "
                f"such as {DEFAULT_KERNEL} or 6.1.0-57 (package "
                "linux-image-VERSION-cloud-arm64)"
            )
        missing = [tool for tool in (QEMU, "mkfs.ext4", "debugfs") if shutil.which(tool) is None]
        if missing:
            raise GuestUnavailable(
                f"the arm64 guest needs {', '.join(missing)} on PATH "
                "(Debian: apt-get install qemu-system-arm e2fsprogs)"
            )
        if not (checkout_root() / "native" / "build.py").is_file():
            raise GuestUnavailable(
                "the arm64 guest builds pytest-rseq from a source checkout; this one is installed "
                f"without its sources ({checkout_root()} has no native/build.py)"
            )
        if not self.images.complete():
            self._check_can_build()

    def _check_can_build(self) -> None:
        where = self.cache_dir
        if os.geteuid() != 0:
            raise GuestUnavailable(
                f"the arm64 images are not cached ({where}) and building them needs root "
                "(the packages are unpacked with their owners); run once as root, or point "
                "cache_dir at a built cache"
            )
        tools = {"apt-get": "apt", "dpkg-deb": "dpkg", "cpio": "cpio"}
        absent = sorted({pkg for tool, pkg in tools.items() if shutil.which(tool) is None})
        if not KEYRING.is_file():
            absent.append("debian-archive-keyring")
        if absent:
            raise GuestUnavailable(
                f"building the arm64 images needs the Debian packages {', '.join(absent)} "
                f"(apt-get install {' '.join(absent)})"
            )
        if "arm64" not in foreign_architectures():
            raise GuestUnavailable(
                "the arm64 kernel and busybox come from apt, which has no arm64 architecture: "
                "dpkg --add-architecture arm64 && apt-get update"
            )
        if not apt_knows(f"{self.spec.kernel_package}:arm64"):
            raise GuestUnavailable(
                f"apt does not know {self.spec.kernel_package}:arm64: run apt-get update, or "
                "pick a version `apt-cache search linux-image-.*-cloud-arm64` lists"
            )
        problem = unreachable(mirror())
        if problem:
            raise GuestUnavailable(
                f"the arm64 images are not cached ({where}) and the Debian mirror {mirror()} "
                f"cannot be reached to build them ({problem})"
            )

    def prepare(self) -> Images:
        """Check, then build the missing cached images (minutes the first time)."""
        self.check()
        if not self.images.complete():
            start = time.monotonic()
            self._log(f"building the arm64 images into {self.cache_dir} (first run only)")
            try:
                ensure_images(self.spec, self.cache_dir, self._log)
            except RuntimeError as exc:
                raise GuestUnavailable(f"building the arm64 images failed: {exc}") from exc
            self._log(f"arm64 images built in {time.monotonic() - start:.0f} s")
        return self.images

    # -- run -----------------------------------------------------------------------------

    def run(self, command: str, *, timeout_s: float) -> GuestResult:
        """Boot, run ``sh -c command`` in the checkout copy with ``$PRSEQ_GUEST_OUT`` set,
        power off, and return its status, console output and output files.

        On timeout QEMU is killed and the result's returncode is 124 (as timeout(1) has it).
        """
        images = self.prepare()
        start = time.monotonic()
        out_dir = Path(tempfile.mkdtemp(prefix="prseq-arm64-out-"))
        try:
            with tempfile.TemporaryDirectory(prefix="prseq-arm64-job-") as tmp:
                work = Path(tmp)
                build_key = self._stage(work / "job", command)
                job_img = work / "job.ext4"
                _mkfs(work / "job", job_img)
                console = work / "console.log"
                timed_out = self._boot(images, job_img, console, timeout_s)
                text = console.read_bytes().decode("utf-8", "replace").replace("\r\n", "\n")
                returncode, output = _parse_console(text)
                if timed_out:
                    returncode = 124
                    output += f"\npytest-rseq: the arm64 guest timed out after {timeout_s:g} s\n"
                recovered = _debugfs_rdump(job_img, "/out", work / "back")
                if recovered is not None:
                    for item in recovered.iterdir():
                        shutil.move(str(item), out_dir / item.name)
                self._keep_build(job_img, work, build_key)
        except BaseException:
            shutil.rmtree(out_dir, ignore_errors=True)
            raise
        return GuestResult(returncode, output, out_dir, time.monotonic() - start)

    def _stage(self, job: Path, command: str) -> Path:
        """Fill the job folder: checkout copy, run.sh, command, a cached core build if any.

        Returns the cache folder of this checkout's native build in this guest.
        """
        src = job / "src"
        _copy_checkout(checkout_root(), src)
        shutil.copytree(self.images.pylib, job / "pylib", symlinks=True)
        if self.project is not None:
            _copy_checkout(Path(self.project), job / "project")
        _write_dist_info(src)
        build_key = self.images.builds / source_hash(checkout_root())
        cached = sorted(build_key.glob("_prseq*.so")) if build_key.is_dir() else []
        for so in cached:
            shutil.copy2(so, src / "pytest_rseq" / so.name)
        (job / "out").mkdir()
        (job / "command").write_text(command)
        (job / "run.sh").write_text(_RUN_SH.format(out_env=OUT_ENV, root=GUEST_ROOT, begin=_BEGIN))
        return build_key

    def _keep_build(self, job_img: Path, work: Path, build_key: Path) -> None:
        built = _debugfs_rdump(job_img, "/built", work / "built-back")
        if built is None or build_key.is_dir():
            return
        tmp = Path(tempfile.mkdtemp(prefix="tmp-", dir=self.images.root_folder))
        for so in built.glob("_prseq*.so"):
            shutil.copy2(so, tmp / so.name)
        self.images.builds.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):  # another run kept the same build first
            os.rename(tmp, build_key)
        shutil.rmtree(tmp, ignore_errors=True)

    def qemu_command(self, images: Images, job_img: Path) -> list[str]:
        """The QEMU command line (the root disk opened as a snapshot: never written)."""
        return [
            QEMU,
            "-M", "virt",
            "-cpu", "cortex-a72",
            "-smp", str(self.cpus),
            "-m", str(self.memory_mb),
            "-display", "none",
            "-monitor", "none",
            "-serial", "stdio",
            "-nic", "none",
            "-no-reboot",
            "-kernel", str(images.kernel),
            "-initrd", str(images.initrd),
            "-append", "console=ttyAMA0 panic=-1 quiet loglevel=3",
            "-drive", f"if=none,id=root,file={images.rootfs},format=raw,snapshot=on",
            "-device", "virtio-blk-pci,drive=root",
            "-drive", f"if=none,id=job,file={job_img},format=raw",
            "-device", "virtio-blk-pci,drive=job",
        ]  # fmt: skip

    def _boot(self, images: Images, job_img: Path, console: Path, timeout_s: float) -> bool:
        """Run QEMU to its end (or kill it at ``timeout_s``); return True when it timed out."""
        cmd = self.qemu_command(images, job_img)
        with console.open("wb") as sink, _sigterm_raises():
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_kill_with_parent,
            )
            try:
                proc.wait(timeout=timeout_s)
                return False
            except subprocess.TimeoutExpired:
                return True
            finally:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While QEMU runs, SIGTERM raises KeyboardInterrupt (so QEMU is killed on the way out)."""
    previous = sigterm.install()
    try:
        yield
    finally:
        sigterm.uninstall(previous)


def _parse_console(text: str) -> tuple[int, str]:
    """(exit status, the command's output) from the console; 125 when no status came."""
    match = None
    for match in _RC.finditer(text):  # noqa: B007 - the last one is the init's
        pass
    begin = text.find(_BEGIN + "\n")
    if match is None:
        return 125, text + "\npytest-rseq: the arm64 guest ended without an exit status\n"
    body = text[begin + len(_BEGIN) + 1 : match.start()] if begin >= 0 else text[: match.start()]
    return int(match.group(1)), body


def main(argv: list[str] | None = None) -> int:
    """``--build``: fill the cache; ``-- COMMAND``: run COMMAND in the guest, print its output."""
    parser = argparse.ArgumentParser(prog="python -m pytest_rseq.vm.arm64", description=__doc__)
    parser.add_argument("--kernel", help=f"Debian cloud-arm64 kernel (default {DEFAULT_KERNEL})")
    parser.add_argument("--cache-dir", type=Path, help="default $XDG_CACHE_HOME/pytest-rseq/arm64")
    parser.add_argument("--build", action="store_true", help="build the cached images and exit")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds (default 1800)")
    parser.add_argument("--out", type=Path, help="copy $PRSEQ_GUEST_OUT's files here")
    parser.add_argument("command", nargs="*", help="shell command run in the checkout copy")
    args = parser.parse_args(argv)
    try:
        guest = Arm64Guest(args.kernel, args.cache_dir)
        if args.build or not args.command:
            images = guest.prepare()
            print(images.kernel, images.initrd, images.rootfs, sep="\n")
            return 0
        result = guest.run(
            shlex.join(args.command) if len(args.command) > 1 else args.command[0],
            timeout_s=args.timeout,
        )
    except GuestUnavailable as exc:
        print(f"pytest-rseq: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"pytest-rseq: interrupted ({exc}); the guest was stopped", file=sys.stderr)
        return 130
    sys.stdout.write(result.output if result.output.endswith("\n") else result.output + "\n")
    print(f"[arm64] exit {result.returncode}, {result.wall_s:.1f} s", file=sys.stderr)
    if args.out:
        shutil.copytree(result.out_dir, args.out, dirs_exist_ok=True)
    shutil.rmtree(result.out_dir, ignore_errors=True)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
