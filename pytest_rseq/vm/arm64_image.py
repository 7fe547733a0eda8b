"""The cached pieces an arm64 guest boots from: kernel, initramfs, root file system.

Everything is built from Debian's arm64 packages on an x86_64 (or any) host:

- the kernel: ``linux-image-<version>-cloud-arm64`` fetched with ``apt-get download``
  and unpacked with ``dpkg-deb -x`` (its ``vmlinuz`` is an uncompressed arm64 ``Image``);
- the initramfs: ``busybox-static:arm64`` plus the kernel's virtio modules (virtio-blk and
  virtio-pci are modules in Debian's arm64 kernels), and an ``/init`` that mounts the root
  and job disks, runs the job in a chroot and powers off;
- the root file system: Debian bookworm's arm64 packages that pytest-rseq needs and their
  dependencies, resolved and downloaded by a private apt and unpacked with ``dpkg-deb -x``
  (:mod:`pytest_rseq.vm.arm64_rootfs`: no debootstrap, no arm64 program run on the host),
  packed into an ext4 image with ``mkfs.ext4 -d`` (no loop device, no mount).

Kernel and initramfs live in ``<cache>/boot-<kernel>-<hash>/``, the root file system (and
the guest's builds of pytest-rseq) in ``<cache>/rootfs-<suite>-<hash>/``; the hashes cover
every input (kernel version, modules, init script; suite, package list; recipe version), so
changing any of them builds that piece anew.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import arm64_rootfs
from .arm64_boot import (
    INIT_SCRIPT,
    VIRTIO_MODULES,
    Log,
    _run,
    build_initramfs,
    build_kernel,
)

RECIPE_VERSION = 4
"""Bump when the way the images are built changes (the cache key includes it)."""

DEFAULT_KERNEL = "6.12.117+deb12"
"""Debian bookworm's 6.12 cloud-arm64 kernel (``linux-image-6.12.117+deb12-cloud-arm64``):
recent enough (6.3+) for ``mm_cid``, so every gate scenario applies."""

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "PYTEST_RSEQ_DEBIAN_MIRROR"

PACKAGES = (
    "dash",
    "coreutils",
    "python3",
    "python3-dev",
    "python3-distutils",
    "gcc",
    "libc6-dev",
    "python3-cffi",
    "python3-psutil",
    "python3-pyelftools",
    "python3-capstone",
)
"""Debian arm64 packages of the root file system (what pytest-rseq and its tests need: a
shell and coreutils for the job script, Python with its headers, gcc, the C libraries);
pytest and pytest-xdist come from ``PYTHON_LIBS``."""

PYTHON_LIBS = (
    "pytest>=7.4",
    "pluggy>=1.5",
    "pygments>=2.7.2",
    "iniconfig",
    "packaging",
    "execnet>=2.1",
    "pytest-xdist>=3.5",
)
"""Pure-Python libraries newer than bookworm's (pytest 7.2, pluggy 1.0: the plugin needs
pytest >= 7.4), installed on the host with pip into a folder the guest puts first on
``PYTHONPATH``."""


@dataclass(frozen=True)
class ImageSpec:
    """Every input of the cached images; ``key`` hashes them all."""

    kernel: str = DEFAULT_KERNEL
    packages: tuple[str, ...] = PACKAGES
    python_libs: tuple[str, ...] = PYTHON_LIBS
    suite: str = SUITE
    recipe: int = RECIPE_VERSION
    init: str = field(default=INIT_SCRIPT, repr=False)

    @property
    def kernel_package(self) -> str:
        """The Debian package that holds this kernel (arm64 cloud flavour)."""
        return f"linux-image-{self.kernel}-cloud-arm64"

    def _hash(self, *parts: str) -> str:
        digest = hashlib.sha256()
        for part in (str(self.recipe), *parts):
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.hexdigest()[:12]

    @property
    def boot_key(self) -> str:
        """Hash of what the kernel and initramfs are made of (kernel, modules, /init)."""
        return f"boot-{self.kernel}-{self._hash(self.kernel, self.init, *VIRTIO_MODULES)}"

    @property
    def rootfs_key(self) -> str:
        """Hash of what the root file system is made of (suite, package list)."""
        return f"rootfs-{self.suite}-{self._hash(self.suite, *self.packages)}"

    @property
    def pylib_key(self) -> str:
        """Hash of the pure-Python libraries pip installs for the guest."""
        return f"pylib-{self._hash(*self.python_libs)}"

    @property
    def key(self) -> str:
        """All keys: a different input gets a different cache folder."""
        return f"{self.boot_key}+{self.rootfs_key}+{self.pylib_key}"


@dataclass(frozen=True)
class Images:
    """Paths of the cached pieces of one :class:`ImageSpec` under a cache folder."""

    boot_folder: Path
    root_folder: Path
    pylib: Path
    """Pure-Python libraries (``PYTHON_LIBS``) the guest imports before its own."""

    @classmethod
    def of(cls, spec: ImageSpec, cache_dir: Path) -> Images:
        """Where ``spec``'s pieces live in ``cache_dir``."""
        return cls(
            cache_dir / spec.boot_key, cache_dir / spec.rootfs_key, cache_dir / spec.pylib_key
        )

    @property
    def kernel(self) -> Path:
        """The arm64 ``Image`` QEMU boots."""
        return self.boot_folder / "Image"

    @property
    def initrd(self) -> Path:
        """The gzip-compressed cpio initramfs."""
        return self.boot_folder / "initrd.cpio.gz"

    @property
    def rootfs(self) -> Path:
        """The ext4 root file system (never written: QEMU opens it as a snapshot)."""
        return self.root_folder / "rootfs.ext4"

    @property
    def builds(self) -> Path:
        """Per-source-hash builds of pytest-rseq's native core made in this root file system."""
        return self.root_folder / "builds"

    def complete(self) -> bool:
        """True when all three pieces exist (each is renamed into place when done)."""
        return (
            self.kernel.is_file()
            and self.initrd.is_file()
            and self.rootfs.is_file()
            and self.pylib.is_dir()
        )


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pytest-rseq/arm64`` (``~/.cache`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-rseq" / "arm64"


def mirror() -> str:
    """The Debian mirror of the root file system's packages (``$PYTEST_RSEQ_DEBIAN_MIRROR``
    overrides)."""
    return os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR


def ensure_images(spec: ImageSpec, cache_dir: Path, log: Log) -> Images:
    """Return the cached images of ``spec``, building the missing ones first (root needed).

    Each piece is built in a temporary folder beside where it goes and renamed into place,
    so an interrupted build leaves nothing that looks complete.
    """
    images = Images.of(spec, cache_dir)
    if not (images.kernel.is_file() and images.initrd.is_file()):
        with _workdir(images.boot_folder) as work:
            vmlinuz, modules = build_kernel(spec.kernel_package, work, log)
            build_initramfs(spec.init, modules, work, work / "initrd.cpio.gz", log)
            shutil.copy2(vmlinuz, work / "Image")
            os.replace(work / "Image", images.kernel)
            os.replace(work / "initrd.cpio.gz", images.initrd)
    if not images.rootfs.is_file():
        with _workdir(images.root_folder) as work:
            arm64_rootfs.build(spec.packages, spec.suite, mirror(), work, work / "rootfs.ext4", log)
            os.replace(work / "rootfs.ext4", images.rootfs)
    if not images.pylib.is_dir():
        images.pylib.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="build-pylib-", dir=images.pylib.parent) as tmp:
            target = Path(tmp) / "site"
            install_python_libs(spec.python_libs, target, log)
            os.replace(target, images.pylib)
    return images


def install_python_libs(requirements: tuple[str, ...], target: Path, log: Log) -> None:
    """pip-install pure-Python wheels for the guest's CPython 3.11 on aarch64 into ``target``."""
    _run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--only-binary=:all:",
            "--platform", "manylinux2014_aarch64", "--python-version", "3.11",
            "--implementation", "cp", "--target", str(target), *requirements,
        ],
        log,
    )  # fmt: skip


@contextlib.contextmanager
def _workdir(folder: Path) -> Iterator[Path]:
    """A temporary build folder inside ``folder``, removed afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-", dir=folder) as tmp:
        yield Path(tmp)
