"""What the host needs to build the arm64 guest's images: probes ``Arm64Guest.check`` reads."""

from __future__ import annotations

import socket
import subprocess
from urllib.parse import urlparse


def foreign_architectures() -> list[str]:
    """``dpkg --print-foreign-architectures`` (empty when dpkg is missing)."""
    try:
        proc = subprocess.run(
            ["dpkg", "--print-foreign-architectures"], capture_output=True, text=True, check=False
        )
    except OSError:
        return []
    return proc.stdout.split()


def apt_knows(package: str) -> bool:
    """Whether ``apt-cache show package`` finds it."""
    try:
        return subprocess.run(["apt-cache", "show", package], capture_output=True).returncode == 0
    except OSError:
        return False


def unreachable(url: str) -> str | None:
    """Why a TCP connection to the host of ``url`` fails (None: it connects)."""
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname or "", parsed.port or 80), timeout=10).close()
    except OSError as exc:
        return str(exc) or type(exc).__name__
    return None
