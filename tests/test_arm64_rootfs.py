"""The arm64 root file system builder, without network or VM: the private apt's options,
apt's errors passed on, the finishing steps and the precompiled stdlib."""

from __future__ import annotations

import importlib.util
import marshal
import os
import sys
from pathlib import Path

import pytest

from pytest_rseq.vm import arm64_rootfs


def _quiet(line: str) -> None:
    pass


def test_the_private_apt_never_reads_or_writes_the_hosts_state(tmp_path: Path) -> None:
    options = arm64_rootfs.apt_options(tmp_path / "apt")
    settings = dict(o.split("=", 1) for o in options[1::2])
    assert set(options[0::2]) == {"-o"}
    assert settings["APT::Architecture"] == settings["APT::Architectures"] == "arm64"
    folders = [name for name in settings if name.startswith("Dir::")]
    assert len(folders) == 7, folders
    for name in folders:
        assert settings[name].startswith(str(tmp_path / "apt")), name


def test_a_missing_keyring_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(arm64_rootfs, "KEYRING", tmp_path / "no-keyring.gpg")
    with pytest.raises(RuntimeError, match=r"no-keyring\.gpg is missing.*debian-archive-keyring"):
        arm64_rootfs.download_packages(("dash",), "bookworm", "http://x", tmp_path, _quiet)


def _fake_apt_get(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, script: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "apt-get"
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(arm64_rootfs, "KEYRING", Path(__file__))
    return tmp_path / "calls"


def test_apts_error_names_the_unknown_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_apt_get(
        monkeypatch,
        tmp_path,
        'case "$*" in *install*) echo "E: Unable to locate package nosuch-pkg" >&2; exit 100;; '
        "esac\n",
    )
    with pytest.raises(RuntimeError) as info:
        arm64_rootfs.download_packages(
            ("dash", "nosuch-pkg"), "bookworm", "http://x", tmp_path / "apt", _quiet
        )
    assert "exit 100" in str(info.value)
    assert "Unable to locate package nosuch-pkg" in str(info.value)


def test_download_returns_what_apt_fetched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = _fake_apt_get(
        monkeypatch,
        tmp_path,
        f'echo "$*" >> {tmp_path}/calls\n'
        'for a in "$@"; do case "$a" in Dir::Cache=*) cache=${a#Dir::Cache=};; esac; done\n'
        'case "$*" in *install*) touch "$cache/archives/dash_0.5_arm64.deb";; esac\n',
    )
    apt = tmp_path / "apt"
    debs = arm64_rootfs.download_packages(("dash",), "bookworm", "http://mirror", apt, _quiet)
    assert [d.name for d in debs] == ["dash_0.5_arm64.deb"]
    update, install = calls.read_text().splitlines()
    assert update.endswith("-q update")
    assert install.endswith("-q -y --download-only install dash")
    assert (apt / "state" / "status").read_text() == ""  # an empty system: every dependency
    sources = (apt / "etc" / "sources.list").read_text()
    assert sources == f"deb [arch=arm64 signed-by={Path(__file__)}] http://mirror bookworm main\n"


def test_apt_downloading_nothing_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_apt_get(monkeypatch, tmp_path, "exit 0\n")
    with pytest.raises(RuntimeError, match="downloaded no package for dash"):
        arm64_rootfs.download_packages(("dash",), "bookworm", "http://x", tmp_path / "apt", _quiet)


def _unpacked_tree(root: Path) -> None:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "dash").write_text("")
    (root / "bin" / "sh").symlink_to("dash")
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "gcc").symlink_to("gcc-12")
    (root / "usr" / "bin" / "gcc-12").write_text("")
    (root / "usr" / "share" / "doc" / "dash").mkdir(parents=True)
    (root / "usr" / "share" / "doc" / "dash" / "copyright").write_text("x")


def test_finish_adds_what_maintainer_scripts_would(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _unpacked_tree(root)
    (root / "etc").mkdir()
    (root / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    arm64_rootfs.finish(root, _quiet)
    assert (root / "etc" / "passwd").read_text() == "root:x:0:0:root:/root:/bin/sh\n"
    assert "staff" in (root / "etc" / "group").read_text()  # never overwritten
    for name in arm64_rootfs.MOUNT_POINTS:
        assert (root / name).is_dir(), name
    assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert not (root / "usr" / "share" / "doc").exists()
    # gcc's postinst makes cc (update-alternatives); the example's build script calls cc
    assert os.readlink(root / "usr" / "bin" / "cc") == "gcc"


def test_finish_without_a_shell_says_so(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr").mkdir(parents=True)
    with pytest.raises(RuntimeError, match=r"has no /bin/sh after unpacking"):
        arm64_rootfs.finish(root, _quiet)


def _pyc_of(source: Path) -> Path:
    return Path(importlib.util.cache_from_source(str(source)))


@pytest.mark.skipif(
    sys.version_info[:2] != arm64_rootfs.GUEST_PYTHON, reason="the host is not Python 3.11"
)
def test_the_stdlib_is_precompiled_for_the_guests_paths(tmp_path: Path) -> None:
    root = tmp_path / "root"
    stdlib = root / "usr" / "lib" / "python3.11"
    dist = root / "usr" / "lib" / "python3" / "dist-packages" / "pkg"
    for folder in (stdlib / "test", dist):
        folder.mkdir(parents=True)
    (stdlib / "mod.py").write_text("X = 1\n")
    (stdlib / "test" / "bad.py").write_text("def broken(:\n")  # as CPython's own test data
    (dist / "__init__.py").write_text("Y = 2\n")
    lines: list[str] = []
    arm64_rootfs.precompile(root, lines.append)
    pyc = _pyc_of(stdlib / "mod.py").read_bytes()
    assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, source never checked
    assert marshal.loads(pyc[16:]).co_filename == "/usr/lib/python3.11/mod.py"
    assert _pyc_of(dist / "__init__.py").is_file()
    assert not _pyc_of(stdlib / "test" / "bad.py").exists()
    assert lines == []


def test_another_host_python_leaves_the_stdlib_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(arm64_rootfs, "GUEST_PYTHON", (2, 7))
    stdlib = tmp_path / "usr" / "lib" / "python2.7"
    stdlib.mkdir(parents=True)
    (stdlib / "mod.py").write_text("X = 1\n")
    lines: list[str] = []
    arm64_rootfs.precompile(tmp_path, lines.append)
    assert not (stdlib / "__pycache__").exists()
    assert lines and "is not the guest's 2.7" in lines[0]
