"""``--rseq-json`` / ``rseq_json``: checked writable when pytest starts, not at the end.

A report path that cannot be written would otherwise be found only after the
whole session ran. The check creates nothing that stays: an existing file is
opened for writing without truncating it; otherwise a probe file is created
in the folder and removed at once.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest


def _why_unwritable(path: Path) -> str | None:
    if path.is_dir():
        return "it is a directory"
    folder = path.parent
    if not folder.exists():
        return f"the directory {folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is not a directory"
    try:
        if path.exists():
            os.close(os.open(path, os.O_WRONLY))
        else:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".rseq-json-probe-"):
                pass
    except OSError as exc:
        return f"cannot write there ({exc.strerror or exc})"
    return None


def check_writable(path: Path, source: str, value: str) -> None:
    """Raise a usage error naming ``source`` and the path when ``path`` cannot be written.

    Raises:
        pytest.UsageError: ``path`` is a directory, its folder is missing, or
            writing there is refused.
    """
    why = _why_unwritable(path)
    if why is not None:
        raise pytest.UsageError(f"{source}: invalid value {value!r}: {path}: {why}")
