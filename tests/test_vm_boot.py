"""One real VM: boot a Linux 6.1 kernel under QEMU and run the `--vm-quick` gate in it.

6.1 predates mm_cid (no ``AT_RSEQ_FEATURE_SIZE``), so this shows both what
must pass on an older kernel and that the mm_cid scenario is reported as not
applicable, not as a failure. The kernel comes from ``PYTEST_RSEQ_VM_KERNEL``
(a vmlinuz path or Debian version) or the cache
(``python -m pytest_rseq.vm.kernels 6.1.0-57-amd64``); without it, or
without QEMU, virtme-ng or udev, the test is skipped with the exact reason,
unless ``PYTEST_RSEQ_VM_REQUIRED=1`` (CI, once it fetched the kernel): then
it fails with that reason, so a VM check that must run never turns into a skip.
"""

from __future__ import annotations

import os

import pytest

from pytest_rseq import gate
from pytest_rseq.vm import cli, kernels, matrix, targets
from pytest_rseq.vm.guest import GuestUnavailable

KERNEL_ENV = "PYTEST_RSEQ_VM_KERNEL"
REQUIRED_ENV = "PYTEST_RSEQ_VM_REQUIRED"
DEFAULT_KERNEL = "6.1.0-57-amd64"


def cannot_boot(reason: str) -> None:
    """Skip with ``reason``; fail with it where a VM is required (``PYTEST_RSEQ_VM_REQUIRED=1``)."""
    if os.environ.get(REQUIRED_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRED_ENV}=1: this run must boot a VM)", pytrace=False)
    pytest.skip(reason)


@pytest.mark.slow
def test_gate_in_a_6_1_guest() -> None:
    value = os.environ.get(KERNEL_ENV) or DEFAULT_KERNEL
    if (
        not os.environ.get(KERNEL_ENV)
        and not kernels.vmlinuz_in(kernels.cache_root(), DEFAULT_KERNEL).is_file()
    ):
        cannot_boot(
            f"no kernel image: {DEFAULT_KERNEL} is not in {kernels.cache_root()} and "
            f"{KERNEL_ENV} is unset (python -m pytest_rseq.vm.kernels {DEFAULT_KERNEL})"
        )
    (target,) = targets.targets([value])
    try:
        guest = target.make()
        guest.check()
    except GuestUnavailable as exc:
        cannot_boot(f"cannot boot a VM here: {exc}")
    args = ["--quick", "--seed", "1"]
    for name in cli.VM_QUICK:  # what `--vm-quick` runs in each guest
        args += ["--only", name]
    column, result = matrix.run_target(target, args, timeout_s=matrix.GUEST_TIMEOUT_S)
    assert result is not None
    assert column.unavailable is None, column.verdict
    fp = column.fingerprint
    assert fp["kernel"] == guest.label and fp["rseq_available"], fp
    verdicts = {s["name"]: s["verdict"] for s in column.scenarios}
    assert {"registration/auto", "injector/cpuset", "canary/racy", "canary/bad-signature",
            "path/both-mm_cid", "invariants/mm_cid"} <= set(verdicts), verdicts  # fmt: skip
    for name, verdict in verdicts.items():  # canaries pass when they were caught
        mm_cid_na = "mm_cid" in name and not fp.get("mm_cid_usable")
        assert verdict == (gate.NA if mm_cid_na else gate.PASS), (name, column.scenarios)
    assert column.exit_code == gate.EXIT_PASS, column.verdict
