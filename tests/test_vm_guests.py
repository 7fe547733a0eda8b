"""The VM runner's guest parts that need no VM: kernel values and fetching, the x86_64 guest.

The matrix, the gate options and the pytest options are in ``test_vm.py``; the one test that
boots a real kernel is in ``test_vm_boot.py``.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from vm_fakes import fake_vng

from pytest_rseq.vm import kernels, x86
from pytest_rseq.vm.guest import OUT_ENV, GuestUnavailable

# --- kernels.py -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["6.1", "linux-image-6.1.0-57-amd64", "6.1.0-57-amd64; rm -rf /", "../6.1-amd64", "x"]
)
def test_kernel_version_rejected_with_its_value(bad: str) -> None:
    with pytest.raises(kernels.KernelError) as err:
        kernels.check_version(bad)
    assert repr(bad) in str(err.value) and "Debian kernel version" in str(err.value)


def test_cloud_flavour_refused_with_the_generic_name() -> None:
    with pytest.raises(kernels.KernelError, match=r"lacks 9p.*6\.1\.0-57-amd64"):
        kernels.check_version("6.1.0-57-cloud-amd64")


def test_good_versions_accepted() -> None:
    for good in ("6.1.0-57-amd64", "6.12.117+deb12-amd64", "6.1.0-57-cloud-arm64"):
        assert kernels.check_version(good) == good


def test_cache_root_honours_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert kernels.cache_root() == tmp_path / "pytest-rseq" / "kernels"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert kernels.cache_root() == Path.home() / ".cache" / "pytest-rseq" / "kernels"


def test_resolve_paths(tmp_path: Path) -> None:
    image = tmp_path / "vmlinuz-6.9.0-test"
    image.write_bytes(b"x")
    assert kernels.resolve(str(image)) == image.resolve()
    with pytest.raises(kernels.KernelError, match="exists but is not a file"):
        kernels.resolve(str(tmp_path))
    with pytest.raises(kernels.KernelError, match="no such file"):
        kernels.resolve(str(tmp_path / "missing" / "vmlinuz"))
    with pytest.raises(kernels.KernelError, match="empty value"):
        kernels.resolve(" ")


def test_fetch_uses_the_cache_without_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = kernels.vmlinuz_in(tmp_path, "6.1.0-57-amd64")
    image.parent.mkdir(parents=True)
    image.write_bytes(b"x")
    monkeypatch.setattr(kernels.shutil, "which", lambda name: None)
    assert kernels.resolve("6.1.0-57-amd64", tmp_path) == image


def test_fetch_without_apt_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels.shutil, "which", lambda name: None)
    with pytest.raises(kernels.KernelError, match=r"'6\.1\.0-57-amd64': apt-get not found"):
        kernels.fetch("6.1.0-57-amd64", tmp_path)
    assert list(tmp_path.iterdir()) == []


def _fake_apt(bin_dir: Path, deb: Path | None) -> None:
    """An ``apt-get`` that copies ``deb`` into its cwd, or fails as apt does for unknown names."""
    bin_dir.mkdir()
    body = f'cp "{deb}" .' if deb else 'echo "E: Unable to locate package $3" >&2; exit 100'
    script = bin_dir / "apt-get"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed")
def test_fetch_unpacks_a_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    version = "6.9.0-1-amd64"
    pkg = tmp_path / "pkg"
    (pkg / "boot").mkdir(parents=True)
    (pkg / "boot" / f"vmlinuz-{version}").write_bytes(b"kernel")
    (pkg / "lib" / "modules" / version).mkdir(parents=True)
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN" / "control").write_text(
        f"Package: linux-image-{version}\nVersion: 1\nArchitecture: amd64\n"
        "Maintainer: t <t@example.com>\nDescription: test\n"
    )
    deb = tmp_path / "k.deb"
    subprocess.run(["dpkg-deb", "-b", str(pkg), str(deb)], check=True, capture_output=True)
    _fake_apt(tmp_path / "bin", deb)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    cache = tmp_path / "cache"
    image = kernels.fetch(version, cache)
    assert image == cache / version / "boot" / f"vmlinuz-{version}"
    assert image.read_bytes() == b"kernel"
    assert (cache / version / "lib" / "modules" / version).is_dir()
    assert sorted(p.name for p in cache.iterdir()) == [version]  # no temporary folder left


def test_fetch_of_an_unknown_package_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_apt(tmp_path / "bin", None)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(kernels.KernelError) as err:
        kernels.fetch("6.1.0-999-amd64", tmp_path / "cache")
    text = str(err.value)
    assert "linux-image-6.1.0-999-amd64" in text and "unknown to apt" in text
    assert list((tmp_path / "cache").iterdir()) == []


def test_kernels_command_line(tmp_path: Path) -> None:
    image = tmp_path / "vmlinuz-x"
    image.write_bytes(b"x")
    run = [sys.executable, "-m", "pytest_rseq.vm.kernels"]
    ok = subprocess.run([*run, str(image)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and ok.stdout.strip() == str(image.resolve())
    bad = subprocess.run([*run, "nope"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "kernel 'nope'" in bad.stderr


# --- x86.py -----------------------------------------------------------------------------------


def _which(missing: str = "", vng: str = "/opt/venv/bin/vng") -> Any:
    def which(name: str) -> str | None:
        if name == missing:
            return None
        return vng if name == "vng" else f"/usr/bin/{name}"

    return which


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "boot" / "vmlinuz-6.1.0-57-amd64"
    path.parent.mkdir()
    path.write_bytes(b"x")
    return path


@pytest.mark.parametrize(
    ("missing", "words"),
    [
        ("qemu-system-x86_64", "qemu-system-x86_64 not found: install QEMU"),
        ("vng", "virtme-ng (vng) not found: pip install 'pytest-rseq[vm]'"),
        ("depmod", "kmod not installed"),
    ],
)
def test_check_names_the_missing_tool(image: Path, missing: str, words: str) -> None:
    guest = x86.X86Guest(image, which=_which(missing))
    with pytest.raises(GuestUnavailable) as err:
        guest.check()
    assert str(err.value).startswith(words)


def test_check_without_udev(image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(x86, "UDEVD", ("/nonexistent/systemd-udevd",))
    with pytest.raises(GuestUnavailable, match=r"udev not installed.*output and exit status"):
        x86.X86Guest(image, which=_which()).check()


def test_check_missing_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(x86, "UDEVD", (str(tmp_path),))
    missing = tmp_path / "vmlinuz-nope"
    with pytest.raises(GuestUnavailable, match=f"kernel image '{missing}' does not exist"):
        x86.X86Guest(missing, which=_which()).check()


def test_vng_command_line_and_script(image: Path, tmp_path: Path) -> None:
    guest = x86.X86Guest(image, which=_which())
    assert guest.label == "6.1.0-57-amd64" and guest.arch == "x86_64"
    assert guest.python == sys.executable
    argv = guest.vng_argv(tmp_path / "out" / "s.sh")
    assert argv[:3] == ["/opt/venv/bin/vng", "-r", str(image)]
    for flag in ("--disable-kvm", "--force-9p"):
        assert flag in argv
    assert argv[argv.index("--rwdir") + 1] == str(tmp_path / "out")
    assert argv[argv.index("--cpus") + 1] == "2" and argv[argv.index("-m") + 1] == "1024"
    assert "cgroup_no_v1=all" not in argv
    assert argv[-2:] == ["--exec", f"sh {tmp_path / 'out' / 's.sh'}"]
    v2 = x86.X86Guest(image, cgroup_v2_only=True, which=_which())
    assert v2.label == "6.1.0-57-amd64 v2only"
    assert v2.vng_argv(tmp_path / "s.sh")[-4:-2] == ["--append", "prseq_guest=1 cgroup_no_v1=all"]
    script = guest.script("echo hi", tmp_path)
    assert f"export {OUT_ENV}={tmp_path}" in script
    assert "+cpuset > /sys/fs/cgroup/cgroup.subtree_control" in script
    assert "sh -c 'echo hi' >" in script


def test_run_brings_back_status_output_and_files(image: Path, tmp_path: Path) -> None:
    guest = x86.X86Guest(image, which=_which(vng=fake_vng(tmp_path)))
    x86_udev = [p for p in x86.UDEVD if Path(p).exists()]
    if not x86_udev:
        pytest.skip("udev not installed here: X86Guest.check() refuses before the fake vng runs")
    result = guest.run(
        f'echo out; echo err >&2; echo data > "${OUT_ENV}/f.txt"; exit 3', timeout_s=30
    )
    try:
        assert result.returncode == 3
        assert result.output.split() == ["out", "err"]
        assert sorted(p.name for p in result.out_dir.iterdir()) == ["f.txt"]
        assert (result.out_dir / "f.txt").read_text() == "data\n"
    finally:
        shutil.rmtree(result.out_dir)


def test_run_without_status_reports_the_console(image: Path, tmp_path: Path) -> None:
    if not any(Path(p).exists() for p in x86.UDEVD):
        pytest.skip("udev not installed here: X86Guest.check() refuses before the fake vng runs")
    vng = tmp_path / "vng-crash"
    vng.write_text("#!/bin/sh\necho 'Kernel panic - not syncing'\nexit 1\n")
    vng.chmod(0o755)
    result = x86.X86Guest(image, which=_which(vng=str(vng))).run("true", timeout_s=30)
    shutil.rmtree(result.out_dir)
    assert result.returncode == x86.NO_STATUS
    assert "no exit status came back" in result.output and "Kernel panic" in result.output


def test_guest_setup_changes_nothing_on_a_host(image: Path, tmp_path: Path) -> None:
    """The guest script's cgroup setup acts only under the guest's kernel mark: run on the
    host (as the stand-in vng does), it mounts nothing, even as root."""
    guest = x86.X86Guest(image, which=_which())
    script = tmp_path / "s.sh"
    script.write_text(guest.script("true", tmp_path))
    before = Path("/proc/mounts").read_text()
    subprocess.run(["sh", str(script)], check=True, capture_output=True)
    assert Path("/proc/mounts").read_text() == before
