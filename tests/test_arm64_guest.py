"""The arm64 guest: what check() says when it cannot run, the cache key, the console
parsing, and (where the images are cached and QEMU is installed) one real boot."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import psutil
import pytest

from pytest_rseq.vm import arm64, arm64_image
from pytest_rseq.vm.arm64 import Arm64Guest
from pytest_rseq.vm.arm64_image import DEFAULT_KERNEL, Images, ImageSpec
from pytest_rseq.vm.guest import OUT_ENV, GuestUnavailable


def _fake_images(guest: Arm64Guest) -> None:
    for path in (guest.images.kernel, guest.images.initrd, guest.images.rootfs):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    guest.images.pylib.mkdir(parents=True)


@pytest.fixture
def buildable(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A host where everything the first build needs is present (each test removes one)."""
    monkeypatch.setattr(arm64.os, "geteuid", lambda: 0)
    monkeypatch.setattr(arm64.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(arm64, "KEYRING", Path(__file__))
    monkeypatch.setattr(arm64, "foreign_architectures", lambda: ["arm64"])
    monkeypatch.setattr(arm64, "apt_knows", lambda package: True)
    monkeypatch.setattr(arm64, "unreachable", lambda url: None)
    return monkeypatch


def test_check_passes_when_everything_is_there(buildable: pytest.MonkeyPatch, tmp_path: Path):
    Arm64Guest(cache_dir=tmp_path).check()


@pytest.mark.parametrize(
    ("missing", "words"),
    [
        (
            "qemu-system-aarch64",
            "qemu-system-aarch64 on PATH (Debian: apt-get install qemu-system-arm",
        ),
        ("debugfs", "debugfs on PATH"),
        ("dpkg-deb", "Debian packages dpkg (apt-get install dpkg)"),
        ("cpio", "Debian packages cpio (apt-get install cpio)"),
    ],
)
def test_check_names_the_missing_tool(
    buildable: pytest.MonkeyPatch, tmp_path: Path, missing: str, words: str
):
    buildable.setattr(
        arm64.shutil, "which", lambda tool: None if tool == missing else f"/usr/bin/{tool}"
    )
    with pytest.raises(GuestUnavailable) as info:
        Arm64Guest(cache_dir=tmp_path).check()
    assert words in str(info.value)


def test_check_without_root_and_without_cache_says_root_is_needed(
    buildable: pytest.MonkeyPatch, tmp_path: Path
):
    buildable.setattr(arm64.os, "geteuid", lambda: 1000)
    guest = Arm64Guest(cache_dir=tmp_path)
    with pytest.raises(GuestUnavailable) as info:
        guest.check()
    assert "building them needs root" in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_check_without_root_with_a_built_cache_passes(
    buildable: pytest.MonkeyPatch, tmp_path: Path
):
    buildable.setattr(arm64.os, "geteuid", lambda: 1000)
    buildable.setattr(arm64, "unreachable", lambda url: "no network")
    guest = Arm64Guest(cache_dir=tmp_path)
    _fake_images(guest)
    guest.check()


@pytest.mark.parametrize(
    ("probe", "value", "words"),
    [
        ("KEYRING", Path("/no/such/keyring.gpg"), "apt-get install debian-archive-keyring"),
        ("foreign_architectures", [], "dpkg --add-architecture arm64 && apt-get update"),
        ("apt_knows", False, f"apt does not know linux-image-{DEFAULT_KERNEL}-cloud-arm64:arm64"),
        ("unreachable", "[Errno 101] Network is unreachable", "cannot be reached to build"),
    ],
)
def test_check_names_what_the_first_build_lacks(
    buildable: pytest.MonkeyPatch, tmp_path: Path, probe: str, value: object, words: str
):
    buildable.setattr(arm64, probe, value if isinstance(value, Path) else lambda *args: value)
    with pytest.raises(GuestUnavailable) as info:
        Arm64Guest(cache_dir=tmp_path).check()
    assert words in str(info.value)


def test_check_rejects_a_bad_kernel_value_by_name(buildable: pytest.MonkeyPatch, tmp_path: Path):
    with pytest.raises(GuestUnavailable, match=r"bad arm64 kernel '\.\./vmlinuz'"):
        Arm64Guest("../vmlinuz", cache_dir=tmp_path).check()


@pytest.mark.parametrize("value", ["6.1.0-57", "6.1.0-57-arm64", "6.1.0-57-cloud-arm64"])
def test_a_kernel_release_names_the_same_guest(value: str, tmp_path: Path) -> None:
    guest = Arm64Guest(value, cache_dir=tmp_path)
    assert guest.spec.kernel_package == "linux-image-6.1.0-57-cloud-arm64"
    assert guest.label == "aarch64 6.1.0-57"


def test_check_outside_a_checkout_says_so(buildable: pytest.MonkeyPatch, tmp_path: Path):
    buildable.setattr(arm64, "checkout_root", lambda: tmp_path / "site-packages")
    with pytest.raises(GuestUnavailable, match="source checkout"):
        Arm64Guest(cache_dir=tmp_path).check()


def test_the_probes_answer_on_this_host() -> None:
    assert isinstance(arm64.foreign_architectures(), list)
    assert arm64.apt_knows("no-such-package-prseq") is False
    assert arm64.unreachable("http://127.0.0.1:9/") is not None  # discard port: refused


def test_the_cache_key_changes_with_every_input() -> None:
    base = ImageSpec()
    changed = [
        dataclasses.replace(base, kernel="6.1.0-57"),
        dataclasses.replace(base, packages=(*base.packages, "strace")),
        dataclasses.replace(base, suite="trixie"),
        dataclasses.replace(base, recipe=base.recipe + 1),
        dataclasses.replace(base, init=base.init + "\n"),
        dataclasses.replace(base, python_libs=(*base.python_libs, "hypothesis")),
    ]
    keys = {spec.key for spec in changed}
    assert base.key not in keys and len(keys) == len(changed)
    assert ImageSpec().key == base.key
    # A new kernel or init keeps the root file system; new packages keep the kernel.
    assert changed[0].rootfs_key == base.rootfs_key and changed[4].rootfs_key == base.rootfs_key
    assert changed[1].boot_key == base.boot_key
    assert changed[5].rootfs_key == base.rootfs_key and changed[5].boot_key == base.boot_key


def test_the_cache_follows_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert arm64_image.default_cache_dir() == tmp_path / "pytest-rseq" / "arm64"
    guest = Arm64Guest()
    assert guest.images.rootfs.parent.parent == tmp_path / "pytest-rseq" / "arm64"
    assert guest.label == f"aarch64 {DEFAULT_KERNEL}" and guest.arch == "aarch64"


def test_console_parsing_takes_the_command_output_and_status() -> None:
    text = "boot noise\nPRSEQ_GUEST_BEGIN\nhello\nworld\nPRSEQ_GUEST_RC=3\n"
    assert arm64._parse_console(text) == (3, "hello\nworld\n")
    status, output = arm64._parse_console("boot noise\nKernel panic\n")
    assert status == 125 and "ended without an exit status" in output
    assert "Kernel panic" in output


def test_the_checkout_copy_leaves_out_builds_and_venvs(tmp_path: Path) -> None:
    dest = tmp_path / "src"
    arm64._copy_checkout(arm64.checkout_root(), dest)
    assert (dest / "native" / "build.py").is_file()
    assert (dest / "pytest_rseq" / "vm" / "arm64.py").is_file()
    assert not (dest / ".venv").exists()
    assert not list((dest / "pytest_rseq").glob("_prseq*.so"))


def test_a_project_folder_is_staged_beside_the_checkout(tmp_path: Path) -> None:
    project = tmp_path / "myproject"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_x.py").write_text("def test_x(): pass\n")
    (project / ".venv").mkdir()
    (project / ".venv" / "junk").write_text("x")
    guest = Arm64Guest(cache_dir=tmp_path / "cache", project=project)
    guest.images.pylib.mkdir(parents=True)
    guest._stage(tmp_path / "job", "true")
    assert (tmp_path / "job" / "project" / "tests" / "test_x.py").is_file()
    assert not (tmp_path / "job" / "project" / ".venv").exists()
    assert "PRSEQ_GUEST_PROJECT=/job/project" in (tmp_path / "job" / "run.sh").read_text()
    assert (tmp_path / "job" / "command").read_text() == "true"


def test_an_interrupted_build_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    spec = ImageSpec()

    def fail(*args: object) -> None:
        raise RuntimeError("apt-get failed (exit 100)")

    images = Images.of(spec, tmp_path)
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(arm64_image, "build_kernel", fail)
        with pytest.raises(RuntimeError, match="apt-get failed"):
            arm64_image.ensure_images(spec, tmp_path, lambda line: None)
    finally:
        mp.undo()
    assert not images.complete()
    assert not list(images.boot_folder.glob("build-*"))


def _cached_guest() -> Arm64Guest:
    guest = Arm64Guest()
    if not guest.images.complete():
        pytest.skip(
            f"the arm64 images are not cached in {guest.cache_dir}: build them with "
            "`python -m pytest_rseq.vm.arm64 --build` (root, network, a few minutes)"
        )
    try:
        guest.check()
    except GuestUnavailable as exc:
        pytest.skip(f"the arm64 guest cannot run here: {exc}")
    return guest


@pytest.mark.slow
def test_a_real_arm64_guest_runs_a_command_and_brings_files_back() -> None:
    guest = _cached_guest()
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    command = (
        'uname -m; echo "$(uname -r)" > "$PRSEQ_GUEST_OUT/kernel"; '
        'mkdir "$PRSEQ_GUEST_OUT/sub"; python3 -c "import pytest_rseq, platform; '
        'print(\'machine\', platform.machine())" > "$PRSEQ_GUEST_OUT/sub/py"; exit 7'
    )
    result = guest.run(command, timeout_s=600)
    try:
        assert result.returncode == 7, result.output
        assert "aarch64" in result.output
        assert (result.out_dir / "kernel").read_text().strip() == f"{DEFAULT_KERNEL}-cloud-arm64"
        assert (result.out_dir / "sub" / "py").read_text() == "machine aarch64\n"
        assert OUT_ENV == "PRSEQ_GUEST_OUT"
    finally:
        shutil.rmtree(result.out_dir, ignore_errors=True)
    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after <= before, "a QEMU process outlived the run"


@pytest.mark.slow
def test_a_real_arm64_guest_is_killed_at_its_timeout() -> None:
    guest = _cached_guest()
    result = guest.run("sleep 600", timeout_s=1)
    shutil.rmtree(result.out_dir, ignore_errors=True)
    assert result.returncode == 124
    assert "timed out after 1 s" in result.output
    assert not [p for p in psutil.Process().children(recursive=True) if "qemu" in p.name()]
    assert guest.images.complete()
