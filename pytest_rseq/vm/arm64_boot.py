"""The arm64 guest's boot pieces: Debian's cloud-arm64 kernel and an initramfs that
loads the virtio modules and mounts the root disk (built by ``arm64_image``)."""

from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

VIRTIO_MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
)
"""Loaded in this order by the initramfs; a name the kernel lacks (or has built in) is skipped."""

INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do
    insmod "/modules/$m.ko" 2>/dev/null
done
i=0
while [ ! -b /dev/vdb ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if ! mount -t ext4 /dev/vda /root || ! mount -t ext4 /dev/vdb /root/job; then
    echo "PRSEQ_GUEST_INIT_FAILED: cannot mount the root or job disk"
    ls -l /dev/vd* 2>&1
    poweroff -f
fi
mount -t proc proc /root/proc
mount -t sysfs sys /root/sys
mount -t devtmpfs dev /root/dev
mkdir -p /root/dev/pts /root/dev/shm
mount -t devpts devpts /root/dev/pts
mount -t tmpfs tmpfs /root/dev/shm
mount -t tmpfs tmpfs /root/tmp
mount -t tmpfs tmpfs /root/run
mount -t cgroup2 cgroup2 /root/sys/fs/cgroup
mount -t tracefs tracefs /root/sys/kernel/tracing 2>/dev/null
hostname prseq-arm64
chroot /root /bin/sh /job/run.sh < /dev/console > /dev/console 2>&1
rc=$?
echo "$rc" > /root/job/rc
echo "PRSEQ_GUEST_RC=$rc"
sync
umount /root/job
umount /root/sys/fs/cgroup /root/sys/kernel/tracing /root/dev/pts /root/dev/shm 2>/dev/null
umount /root/dev /root/proc /root/sys /root/tmp /root/run /root 2>/dev/null
sync
poweroff -f
"""


Log = Callable[[str], None]


def _run(cmd: list[str], log: Log, **kwargs: object) -> None:
    """Run ``cmd``; raise RuntimeError with its output tail when it fails."""
    log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{tail}")


def _apt_download(package: str, into: Path, log: Log) -> Path:
    """``apt-get download package`` into ``into``, unpacked there; return the unpack folder."""
    _run(["apt-get", "download", package], log, cwd=into)
    debs = sorted(into.glob("*.deb"))
    if len(debs) != 1:
        raise RuntimeError(f"apt-get download {package} left {len(debs)} .deb files in {into}")
    unpacked = into / "x"
    _run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], log)
    return unpacked


def build_kernel(kernel_package: str, work: Path, log: Log) -> tuple[Path, Path]:
    """Fetch and unpack the kernel package; return (Image, modules folder of that kernel)."""
    folder = work / "kernel"
    folder.mkdir()
    unpacked = _apt_download(f"{kernel_package}:arm64", folder, log)
    images = sorted((unpacked / "boot").glob("vmlinuz-*"))
    modules = sorted((unpacked / "lib" / "modules").glob("*"))
    if len(images) != 1 or len(modules) != 1:
        raise RuntimeError(f"{kernel_package} has no single vmlinuz and modules folder")
    return images[0], modules[0]


def _find_module(modules: Path, name: str) -> Path | None:
    for suffix in (".ko", ".ko.xz"):
        found = sorted(modules.rglob(name + suffix))
        if found:
            return found[0]
    return None


def build_initramfs(init_script: str, modules: Path, work: Path, out: Path, log: Log) -> None:
    """Write the initramfs (busybox, virtio modules, /init) to ``out`` as a gzip'd cpio."""
    busybox = _apt_download("busybox-static:arm64", _mkdir(work / "busybox"), log)
    root = _mkdir(work / "initramfs")
    for sub in ("bin", "proc", "sys", "dev", "root", "modules"):
        (root / sub).mkdir()
    shutil.copy2(busybox / "bin" / "busybox", root / "bin" / "busybox")
    order = []
    for name in VIRTIO_MODULES:
        found = _find_module(modules, name)
        if found is None:
            log(f"kernel module {name} not found: assumed built in")
            continue
        data = found.read_bytes()
        if found.name.endswith(".xz"):
            data = lzma.decompress(data)
        (root / "modules" / f"{name}.ko").write_bytes(data)
        order.append(name)
    (root / "modules.order").write_text("\n".join(order) + "\n")
    init = root / "init"
    init.write_text(init_script)
    init.chmod(0o755)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    listing = ("\n".join(files) + "\n").encode()
    proc = subprocess.run(
        ["cpio", "--quiet", "-o", "-H", "newc", "--owner=0:0"],
        input=listing,
        cwd=root,
        capture_output=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"cpio failed: {proc.stderr.decode(errors='replace')}")
    out.write_bytes(gzip.compress(proc.stdout, 6))


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path
