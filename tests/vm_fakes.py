"""Stand-ins shared by the VM tests (no VM needed)."""

from __future__ import annotations

from pathlib import Path


def fake_vng(tmp_path: Path) -> str:
    """A ``vng`` that runs its ``--exec`` command here instead of in a VM."""
    script = tmp_path / "fakebin" / "vng"
    script.parent.mkdir()
    script.write_text(
        '#!/bin/sh\nwhile [ "$#" -gt 0 ]; do if [ "$1" = --exec ]; then exec sh -c "$2"; fi; '
        "shift; done\nexit 99\n"
    )
    script.chmod(0o755)
    return str(script)
