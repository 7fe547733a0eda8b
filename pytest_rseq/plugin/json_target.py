"""``--rseq-json`` / ``rseq_json``: checked writable when pytest starts, not at the end.

A report path that cannot be written would otherwise be found only after the
whole session ran. Missing folders are fine (they are created when the report
is written) as long as the nearest existing one is a folder we may write in.
The check creates nothing that stays: an existing file is opened for writing
without truncating it; otherwise a probe file is created in the nearest
existing folder and removed at once.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest


def _why_unwritable(path: Path) -> str | None:
    if path.is_dir():
        return "it is a directory"
    # Missing folders are created when the report is written: look at the
    # nearest one that exists.
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is not a directory"
    try:
        if path.exists():
            os.close(os.open(path, os.O_WRONLY))
        else:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".rseq-json-probe-"):
                pass
    except OSError as exc:
        return f"cannot write in {folder} ({exc.strerror or exc})"
    return None


def check_writable(path: Path, source: str, value: str) -> None:
    """Raise a usage error naming ``source`` and the path when ``path`` cannot be written.

    Raises:
        pytest.UsageError: ``path`` is a directory, a file stands where a folder
            should be, or writing there is refused.
    """
    why = _why_unwritable(path)
    if why is not None:
        raise pytest.UsageError(f"{source}: invalid value {value!r}: {path}: {why}")
