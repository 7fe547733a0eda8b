"""The arm64 guest's job disk: the checkout copied in, ext4 packed, results read back."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .._version import __version__
from .guest import GuestUnavailable


def copy_checkout(root: Path, dest: Path) -> None:
    """Copy a source tree's tracked and not-ignored files (no .venv, builds or caches);
    outside git, everything but those folders and compiled objects."""
    dest.mkdir(parents=True)
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=False,
    )
    if listed.returncode == 0:
        names = [n for n in listed.stdout.decode().split("\0") if n]
    else:
        skip = {".venv", "build", "dist", ".git", "__pycache__", ".mypy_cache", ".ruff_cache"}
        names = [
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file()
            and not skip.intersection(p.relative_to(root).parts)
            and not p.name.endswith(".so")
        ]
    for name in names:
        source = root / name
        if not source.is_file():  # deleted but still tracked
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def write_dist_info(src: Path) -> None:
    """Make the copy an importable distribution (pytest finds the plugin's entry point)."""
    info = src / f"pytest_rseq-{__version__}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: pytest-rseq\nVersion: {__version__}\n"
    )
    (info / "entry_points.txt").write_text("[pytest11]\nrseq = pytest_rseq.plugin\n")


def mkfs(folder: Path, image: Path) -> None:
    """Pack ``folder`` into a fresh ext4 ``image`` (no loop device, no mount)."""
    used = sum(p.lstat().st_size for p in folder.rglob("*"))
    size_mb = used // (1 << 20) + 256
    proc = subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", "prseq-job", "-d", str(folder), str(image), f"{size_mb}M"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise GuestUnavailable(f"mkfs.ext4 of the job disk failed: {proc.stderr.strip()}")


def debugfs_rdump(image: Path, path: str, dest: Path) -> Path | None:
    """Copy ``path`` out of the ext4 ``image`` into ``dest``; return the copy (None: absent)."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["debugfs", "-R", f"rdump {path} {dest}", str(image)],
        capture_output=True,
        check=False,
    )
    copied = dest / Path(path).name
    return copied if copied.is_dir() else None
