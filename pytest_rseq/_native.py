"""Low-level: loads the compiled core (``pytest_rseq._prseq``) and refuses a stale build.

Only this module imports the compiled module, and only when a run or a probe
needs it: loading the pytest plugin never does.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from ._sources import source_hash
from ._version import __version__

REINSTALL_HINT = (
    "rebuild it: `pip install -e .` in a checkout of pytest-rseq, "
    "or `pip install --force-reinstall pytest-rseq`"
)


class NativeCoreError(ImportError):
    """The compiled core is missing, or was built from other sources or another version."""


@lru_cache(maxsize=1)
def load() -> tuple[Any, Any]:
    """Return ``(ffi, lib)`` of the compiled core, checking that it is current.

    Raises:
        NativeCoreError: the module is missing or stale.
    """
    try:
        from . import _prseq
    except ImportError as exc:
        raise NativeCoreError(
            f"the native core of pytest-rseq is not built ({exc}); {REINSTALL_HINT}"
        ) from exc
    ffi, lib = _prseq.ffi, _prseq.lib
    built = ffi.string(lib.prseq_build_version()).decode()
    if built != __version__:
        raise NativeCoreError(
            f"stale native core: built for pytest-rseq {built}, "
            f"the package is {__version__}; {REINSTALL_HINT}"
        )
    root = Path(__file__).resolve().parent.parent
    if (root / "native" / "build.py").is_file():
        have = ffi.string(lib.prseq_source_hash()).decode()
        want = source_hash(root)
        if have != want:
            raise NativeCoreError(
                f"stale native core: native/ changed since it was built "
                f"(sources {want}, build {have}); {REINSTALL_HINT}"
            )
    return ffi, lib
