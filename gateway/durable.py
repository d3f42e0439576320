"""Files that survive a killed process, a power cut and a full disk.

Everything here writes with plain ``os`` calls, straight to the kernel: no Python buffer holds
data a SIGKILL would lose. These are blocking calls: the gateway runs them in worker threads.

* A whole file (a call record) is replaced whole or not at all: written to ``NAME.tmp``
  beside it, fsynced, renamed over the old one, and the directory fsynced so that the rename is
  on disk too. When anything fails (ENOSPC, EIO) the temporary file is removed and the error
  raised: the previous version, if any, stays.
* An appended file (a transcript) grows by whole pieces: a piece that does not fit is cut off
  again, so a reader never finds half a line.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC


def errno_name(exc: OSError) -> str:
    """The name of what went wrong ("ENOSPC" for a full disk): short and greppable."""
    return errno.errorcode.get(exc.errno or 0, "unknown")


def write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    """All of `data` at `offset` (None: at the file position), or OSError. A disk that fills
    up mid-write first takes part of it, then refuses the rest."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        if n <= 0:  # not seen from Linux, but it would loop forever
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]
        if offset is not None:
            offset += n


def fsync_dir(directory: Path) -> None:
    """Make a file's creation or rename in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: a reader sees the old file or the new one, never a part, and
    after a crash the new one is there once this has returned. Leaves no temporary file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, _CREATE | os.O_TRUNC, 0o666)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


class AppendFile:
    """A file written in whole pieces, each straight to the kernel: a killed process loses
    nothing written, and a piece that did not fit (ENOSPC) is cut off again before the error
    is raised, so the file ends with the last whole piece."""

    def __init__(self, path: Path, first: bytes | str) -> None:
        """Create `path` holding `first`; on any failure nothing is left behind."""
        self.name = str(path)
        self._fd = os.open(path, _CREATE | os.O_EXCL | os.O_APPEND, 0o666)
        self._size = 0
        try:
            self.write(first)
        except BaseException:
            os.close(self._fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def write(self, data: bytes | str) -> None:
        """Append `data` (a str as UTF-8) whole, or raise OSError having appended nothing."""
        if isinstance(data, str):
            data = data.encode()
        if self._fd < 0:
            raise ValueError("write to a closed file")
        try:
            write_all(self._fd, data)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise
        self._size += len(data)

    def close(self, sync: bool = True) -> None:
        """Close; with `sync` first fsync the file and its directory (a finished file
        survives a power cut, not only a killed process). Closes even when fsync fails."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        try:
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if sync:
            fsync_dir(Path(self.name).parent)
