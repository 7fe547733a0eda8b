"""Debian kernel images for the VM runner: fetch, unpack and find them in a cache.

``resolve("6.1.0-57-amd64")`` returns the ``vmlinuz`` of Debian's
``linux-image-6.1.0-57-amd64`` package, downloading it with
``apt-get download`` and unpacking it with ``dpkg-deb -x`` into the cache
the first time (nothing is installed, ``/boot`` is not touched). A value
that names an existing file is taken as a ``vmlinuz`` as is. The cache is
``$XDG_CACHE_HOME/pytest-rseq/kernels`` (``~/.cache/...`` by default);
each version unpacks into its own folder, ``<version>/boot/vmlinuz-<version>``
beside ``<version>/lib/modules/<version>`` (where virtme-ng finds the modules).

Command line (used by CI and the docs)::

    python -m pytest_rseq.vm.kernels 6.1.0-57-amd64     # prints the vmlinuz path
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .guest import GuestUnavailable

VERSION = re.compile(r"^[0-9]+\.[0-9]+[0-9A-Za-z.+~-]*-(amd64|arm64)$")
"""A Debian kernel version as in the package name ``linux-image-<version>``."""
DOWNLOAD_TIMEOUT_S = 600.0


class KernelError(GuestUnavailable):
    """A kernel image cannot be found or fetched; the message names the value and why."""


def cache_root() -> Path:
    """The folder kernel images unpack into (``XDG_CACHE_HOME`` honoured)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-rseq" / "kernels"


def check_version(version: str) -> str:
    """Return ``version`` if it is a usable Debian kernel version, else raise ``KernelError``."""
    if not VERSION.match(version):
        raise KernelError(
            f"kernel {version!r}: not a vmlinuz file and not a Debian kernel version "
            "(expected e.g. 6.1.0-57-amd64 or 6.12.117+deb12-amd64, the part after "
            "'linux-image-' in the package name)"
        )
    if "-cloud-" in version and version.endswith("-amd64"):
        raise KernelError(
            f"kernel {version!r}: the cloud flavour lacks 9p, which the x86_64 guest needs; "
            f"use the generic one ({version.replace('-cloud-', '-')})"
        )
    return version


def vmlinuz_in(folder: Path, version: str) -> Path:
    """Where the unpacked package ``version`` keeps its kernel image."""
    return folder / version / "boot" / f"vmlinuz-{version}"


def fetch(version: str, cache_dir: Path | None = None) -> Path:
    """Download and unpack ``linux-image-<version>`` unless cached; return its vmlinuz.

    Raises:
        KernelError: a bad version, no apt-get/dpkg-deb, the package unknown to
            apt (the message carries apt's own words), or an unpack failure.
    """
    check_version(version)
    root = cache_dir if cache_dir is not None else cache_root()
    image = vmlinuz_in(root, version)
    if image.is_file():
        return image
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise KernelError(
                f"kernel {version!r}: {tool} not found; fetching Debian kernel images needs "
                "a Debian or Ubuntu host (or pass the path of a vmlinuz instead)"
            )
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".fetch-{version}-", dir=root) as tmp:
        package = f"linux-image-{version}"
        _call(["apt-get", "download", "-q", package], cwd=tmp, what=f"apt-get download {package}")
        debs = sorted(Path(tmp).glob("*.deb"))
        if len(debs) != 1:
            raise KernelError(f"kernel {version!r}: apt-get download left {len(debs)} .deb files")
        unpacked = Path(tmp) / version
        _call(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], cwd=tmp, what="dpkg-deb -x")
        if not vmlinuz_in(Path(tmp), version).is_file():
            raise KernelError(f"kernel {version!r}: the package holds no boot/vmlinuz-{version}")
        # Rename into place last, so a cache folder is either whole or absent.
        target = root / version
        if not target.exists():
            unpacked.rename(target)
    return image


def _call(argv: list[str], *, cwd: str, what: str) -> None:
    try:
        proc = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise KernelError(f"{what}: no answer in {DOWNLOAD_TIMEOUT_S:g} s") from None
    if proc.returncode != 0:
        words = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        hint = ""
        if any("Unable to locate" in w or "has no installation candidate" in w for w in words):
            hint = " (unknown to apt here: check the name with `apt-cache search linux-image-`)"
        raise KernelError(f"{what} failed (exit {proc.returncode}){hint}: {' / '.join(words)}")


def resolve(value: str, cache_dir: Path | None = None) -> Path:
    """The vmlinuz for ``value``: an existing file as is, else a Debian version (fetched).

    Raises:
        KernelError: a path that exists but is no file, a bad version, a failed fetch.
    """
    text = value.strip()
    if not text:
        raise KernelError("kernel '': empty value (give a vmlinuz path or a Debian version)")
    path = Path(text).expanduser()
    if path.is_file():
        return path.resolve()
    if path.exists():
        raise KernelError(f"kernel {value!r}: {path} exists but is not a file")
    if "/" in text:
        raise KernelError(f"kernel {value!r}: no such file")
    return fetch(text, cache_dir)


def main(argv: list[str] | None = None) -> int:
    """Fetch each version on the command line and print its vmlinuz path."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m pytest_rseq.vm.kernels VERSION|VMLINUZ [...]")
        print(f"  unpacks Debian's linux-image-VERSION into {cache_root()} and prints its vmlinuz")
        return 0 if args else 64
    for value in args:
        try:
            print(resolve(value))
        except KernelError as exc:
            sys.stderr.write(f"pytest-rseq: {exc}\n")
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
