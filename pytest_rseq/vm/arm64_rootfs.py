"""The arm64 guest's root file system, assembled from Debian's arm64 packages on any host.

No debootstrap, no chroot, no arm64 program run on the host: a private apt configuration
(its own state and cache folders, architecture arm64, an empty package status) resolves the
packages pytest-rseq needs and every dependency as for an empty system and downloads them;
``dpkg-deb -x`` unpacks each into the tree. What maintainer scripts would have done and the
guest needs is done here (``/etc/passwd``, the mount points, the stdlib's ``.pyc`` files).
The tree is packed into an ext4 image with ``mkfs.ext4 -d`` (no loop device, no mount).
"""

from __future__ import annotations

import compileall
import py_compile
import shutil
import sys
from pathlib import Path

from .arm64_boot import Log, _run

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
"""The key apt checks the mirror's Release file with (Debian: debian-archive-keyring)."""

GUEST_PYTHON = (3, 11)
"""Bookworm's Python: the host precompiles the guest's stdlib when it runs the same version."""

MOUNT_POINTS = ("proc", "sys", "dev", "tmp", "run", "root", "job", "var/tmp")
"""Folders the initramfs mounts on (or the guest writes to) that no package creates."""

ALTERNATIVES = {"usr/bin/cc": "gcc"}
"""Links ``update-alternatives`` would make in a postinst (``cc``: what build scripts call)."""

TRIMMED = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale")
"""Documentation nothing in the guest reads: left out of the image."""


def apt_options(apt_dir: Path) -> list[str]:
    """apt-get options for a private arm64 apt rooted in ``apt_dir`` (host's apt untouched)."""
    state, cache, etc = apt_dir / "state", apt_dir / "cache", apt_dir / "etc"
    settings = {
        "Dir::State": state,
        "Dir::State::status": state / "status",
        "Dir::Cache": cache,
        "Dir::Etc::SourceList": etc / "sources.list",
        "Dir::Etc::SourceParts": etc / "sources.list.d",
        "Dir::Etc::Preferences": etc / "preferences",
        "Dir::Etc::PreferencesParts": etc / "preferences.d",
        "APT::Architecture": "arm64",
        "APT::Architectures": "arm64",
        "APT::Install-Recommends": "false",
        "APT::Sandbox::User": "root",
        "Acquire::Languages": "none",
        "Debug::NoLocking": "true",
    }
    options = []
    for name, value in settings.items():
        options += ["-o", f"{name}={value}"]
    return options


def download_packages(
    packages: tuple[str, ...], suite: str, mirror: str, apt_dir: Path, log: Log
) -> list[Path]:
    """Download ``packages`` and all they depend on (arm64, from ``mirror``'s ``suite``).

    Returns the ``.deb`` files. Raises RuntimeError naming what failed (a missing keyring,
    an unknown package, an unreachable mirror: apt's own message).
    """
    if not KEYRING.is_file():
        raise RuntimeError(f"{KEYRING} is missing (Debian: apt-get install debian-archive-keyring)")
    for sub in ("state/lists/partial", "cache/archives/partial", "etc/sources.list.d",
                "etc/preferences.d"):  # fmt: skip
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    (apt_dir / "state" / "status").write_text("")
    (apt_dir / "etc" / "sources.list").write_text(
        f"deb [arch=arm64 signed-by={KEYRING}] {mirror} {suite} main\n"
    )
    options = apt_options(apt_dir)
    for args in (["update"], ["-y", "--download-only", "install", *packages]):
        log(f"$ apt-get -q {' '.join(args)}  (a private arm64 apt in {apt_dir})")
        _run(["apt-get", *options, "-q", *args], _silent)
    debs = sorted((apt_dir / "cache" / "archives").glob("*.deb"))
    if not debs:
        raise RuntimeError(f"apt-get downloaded no package for {' '.join(packages)}")
    return debs


def unpack(debs: list[Path], root: Path, log: Log) -> None:
    """``dpkg-deb -x`` every package into ``root``."""
    log(f"unpacking {len(debs)} packages into {root}")
    root.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(root)], _silent)


def _silent(line: str) -> None:
    """A log that drops its lines (the caller logged a shorter one)."""


def finish(root: Path, log: Log) -> None:
    """Do what the guest needs of the packages' maintainer scripts, and trim the docs."""
    for name in TRIMMED:
        shutil.rmtree(root / name, ignore_errors=True)
    for name in MOUNT_POINTS:
        (root / name).mkdir(parents=True, exist_ok=True)
    for name in ("tmp", "var/tmp"):
        (root / name).chmod(0o1777)
    etc = root / "etc"
    etc.mkdir(exist_ok=True)
    for name, text in (("passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("group", "root:x:0:\n")):
        if not (etc / name).exists():
            (etc / name).write_text(text)
    for link, target in ALTERNATIVES.items():
        path = root / link
        if (path.parent / target).exists() and not path.is_symlink() and not path.exists():
            path.symlink_to(target)
    if not (root / "bin" / "sh").exists():
        raise RuntimeError(f"{root} has no /bin/sh after unpacking (dash missing?)")
    precompile(root, log)


def precompile(root: Path, log: Log) -> None:
    """Write the ``.pyc`` files Debian's postinst would (every guest interpreter starts faster).

    Only when this Python is the guest's version: a ``.pyc`` of another version would be
    ignored. Unchecked hash-based: the image is never written, so the sources never change.
    """
    if sys.version_info[:2] != GUEST_PYTHON:
        log(
            f"host Python {sys.version_info[0]}.{sys.version_info[1]} is not the guest's "
            f"{GUEST_PYTHON[0]}.{GUEST_PYTHON[1]}: the guest's stdlib stays without .pyc files"
        )
        return
    version = f"python{GUEST_PYTHON[0]}.{GUEST_PYTHON[1]}"
    for folder in (root / "usr" / "lib" / version, root / "usr" / "lib" / "python3"):
        if folder.is_dir():
            compileall.compile_dir(
                folder,
                quiet=2,
                workers=0,
                stripdir=str(root),
                prependdir="/",
                rx=_SKIPPED,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )


class _Skipped:
    """Paths ``compileall`` leaves alone: test data with deliberate syntax errors."""

    @staticmethod
    def search(path: str) -> bool:
        return "/test/" in path or "/tests/" in path or "/lib2to3/" in path


_SKIPPED = _Skipped()


def build(
    packages: tuple[str, ...], suite: str, mirror: str, work: Path, out: Path, log: Log
) -> None:
    """Download, unpack and finish the root file system in ``work``; pack it into ``out``."""
    root = work / "rootfs"
    unpack(download_packages(packages, suite, mirror, work / "apt", log), root, log)
    finish(root, log)
    used = sum(p.lstat().st_size for p in root.rglob("*"))
    size_mb = used // (1 << 20) + 512
    _run(
        ["mkfs.ext4", "-q", "-F", "-L", "prseq-root", "-d", str(root), str(out), f"{size_mb}M"], log
    )
