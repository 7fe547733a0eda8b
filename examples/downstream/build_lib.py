"""Build step of the example: compile src/percpu.c into the two workload libraries.

    python build_lib.py [OUT_DIR]      # default: ./build

Only the public pytest-rseq API is used: ``pytest_rseq.get_include()`` gives
the folder of ``pytest_rseq.h``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest_rseq

HERE = Path(__file__).resolve().parent
SOURCES = [HERE / "src" / "percpu.c"]
CFLAGS = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared"]
LIBRARIES = {"libpercpu.so": [], "libpercpu_broken.so": ["-DPERCPU_BROKEN"]}


def build(out_dir: Path | str = HERE / "build") -> dict[str, Path]:
    """Compile both libraries into ``out_dir``; return {file name: path}.

    The compiler is ``$CC`` or ``cc``. Raises ``RuntimeError`` with the
    command and the compiler's output on failure.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cc = shlex.split(os.environ.get("CC", "cc"))
    built = {}
    for name, defines in LIBRARIES.items():
        target = out / name
        cmd = [
            *cc,
            *CFLAGS,
            *defines,
            f"-I{pytest_rseq.get_include()}",
            f"-I{HERE / 'src'}",
            *map(str, SOURCES),
            "-o",
            str(target),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
        built[name] = target
    return built


if __name__ == "__main__":
    for path in build(*sys.argv[1:2]).values():
        print(path)
