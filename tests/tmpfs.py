"""A full disk for tests: a small tmpfs mounted for the test, filled to the last block.

Mounting needs root (tests and CI run as root); where it is not permitted the test is skipped
with the reason, never run against a disk that is not full.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SIZE = "256k"


@contextmanager
def small_tmpfs(directory: Path, size: str = SIZE) -> Iterator[Path]:
    """`directory` as a tmpfs of `size`, unmounted at the end."""
    directory.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)]
    try:
        done = subprocess.run(mount, capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        pytest.skip("a full disk is simulated with a small tmpfs: no mount command here")
    if done.returncode != 0:
        pytest.skip(
            "a full disk is simulated with a small tmpfs, and mounting one is not permitted "
            f"here (run as root): {done.stderr.strip()}"
        )
    try:
        yield directory
    finally:
        subprocess.run(["umount", "--lazy", str(directory)], check=True, timeout=10)


def fill(directory: Path, leave: int = 0) -> Path:
    """Fill the file system of `directory` until a write fails with ENOSPC; then free `leave`
    bytes (rounded up to blocks) again. Returns the filler file."""
    filler = directory / "filler"
    block = b"\0" * 4096
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        if leave:
            size = os.fstat(out.fileno()).st_size
            out.truncate(max(0, size - -(-leave // 4096) * 4096))
    return filler
