"""The compiled core: stale-build refusal, lazy import, other architectures, sanitizers."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_rseq import _native

ROOT = Path(__file__).resolve().parent.parent
NATIVE = ROOT / "native"
INCLUDES = [f"-I{NATIVE}", f"-I{ROOT / 'pytest_rseq' / 'include'}"]
CFLAGS = ["-std=gnu11", "-Wall", "-Wextra", "-Werror"]


def _sources(which: str = "SOURCES") -> list[str]:
    """The C files of native/build.py's list ``which`` (the core, or BENCH_SOURCES)."""
    spec = importlib.util.spec_from_file_location("prseq_native_build", NATIVE / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [str(NATIVE / name) for name in getattr(module, which)]


def test_stale_sources_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _native.load.cache_clear()
    monkeypatch.setattr(_native, "source_hash", lambda root: "0" * 16)
    with pytest.raises(_native.NativeCoreError, match=r"stale native core.*pip install -e"):
        _native.load()
    _native.load.cache_clear()


def test_other_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _native.load.cache_clear()
    monkeypatch.setattr(_native, "__version__", "0.0.0-other")
    with pytest.raises(_native.NativeCoreError, match="built for pytest-rseq"):
        _native.load()
    _native.load.cache_clear()


def test_current_build_loads() -> None:
    _native.load.cache_clear()
    ffi, lib = _native.load()
    assert ffi.string(lib.prseq_build_version()).decode() == _native.__version__


def test_loading_the_plugin_does_not_load_the_core() -> None:
    code = (
        "import sys, pytest_rseq, pytest_rseq.plugin; "
        "assert 'pytest_rseq._prseq' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("compiler", ["aarch64-linux-gnu-gcc"])
def test_sections_compile_for_aarch64(compiler: str, tmp_path: Path) -> None:
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed (Debian: gcc-aarch64-linux-gnu)")
    for source in sorted({*_sources(), *_sources("BENCH_SOURCES")}):
        obj = tmp_path / (Path(source).stem + ".o")
        subprocess.run(
            [compiler, *CFLAGS, "-O2", *INCLUDES, "-c", source, "-o", str(obj)], check=True
        )
    dump = subprocess.run(
        ["aarch64-linux-gnu-objdump", "-d", "-j", "__rseq_failure", str(tmp_path / "counters.o")],
        capture_output=True,
        text=True,
    )
    # binutils-aarch64-linux-gnu comes with the cross compiler.
    assert dump.returncode == 0, dump.stderr
    sig = _native.load()[1].PRSEQ_RSEQ_SIG_AARCH64
    assert f"{sig:08x}" in dump.stdout  # the signature word before each abort handler


def _driver(tmp_path: Path, sanitizer: str) -> Path:
    exe = tmp_path / f"driver-{sanitizer.replace(',', '-')}"
    cmd = [
        "gcc",
        *CFLAGS,
        "-O1",
        "-g",
        f"-fsanitize={sanitizer}",
        "-fno-omit-frame-pointer",
        *INCLUDES,
        *_sources(),
        str(ROOT / "tests" / "native" / "driver.c"),
        "-o",
        str(exe),
        "-lpthread",
        "-ldl",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and "cannot find" in proc.stderr:
        pytest.skip(f"the {sanitizer} sanitizer runtime is not installed: {proc.stderr[-200:]}")
    assert proc.returncode == 0, proc.stderr
    return exe


SANITIZER_RUNS = [
    ["counter", "rseq", "4", "0.3"],
    ["counter_mm_cid", "rseq", "4", "0.3"],
    ["counter", "fallback", "4", "0.3"],
    ["counter", "rseq", "3", "0.3", "0", "0", "300"],  # thread churn
    # every native injector at once: tgkill, affinity, churn, membarrier, per-thread timers
    ["counter", "rseq", "3", "0.3", "20000", "500", "200", "2000", "20000"],
]


@pytest.mark.parametrize("sanitizer", ["thread", "address,undefined"])
def test_core_is_clean_under_sanitizers(sanitizer: str, tmp_path: Path) -> None:
    exe = _driver(tmp_path, sanitizer)
    for args in SANITIZER_RUNS:
        proc = subprocess.run(
            [str(exe), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={"TSAN_OPTIONS": "halt_on_error=1", "UBSAN_OPTIONS": "halt_on_error=1"},
        )
        report = proc.stdout + proc.stderr
        assert proc.returncode == 0, report
        assert "Sanitizer" not in report and "runtime error" not in report, report


def test_thread_sanitizer_sees_the_racy_canary(tmp_path: Path) -> None:
    """The racy canary is a data race; TSan must say so (the correct counters stay silent)."""
    exe = _driver(tmp_path, "thread")
    proc = subprocess.run(
        [str(exe), "canary_racy", "rseq", "4", "0.3"], capture_output=True, text=True, timeout=120
    )
    assert "WARNING: ThreadSanitizer: data race" in proc.stderr
