"""Atomic file writes: a crash mid-write never leaves a corrupt or missing file.

Write to a temporary file in the same directory, flush and fsync it, then ``os.replace`` it over the
target (atomic on POSIX and Windows), then fsync the directory so the rename itself is durable. On
any error (a full disk included) the temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def _temp_beside(path: Path) -> Iterator[tuple[int, Path]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield fd, tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[IO[bytes]]:
    """Yield a binary handle to write; on success it is fsynced and renamed onto ``path``."""
    with _temp_beside(Path(path)) as (fd, _tmp), os.fdopen(fd, "wb") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write (for APIs that want a file name, like safetensors);
    on success it is fsynced and renamed onto ``path``."""
    with _temp_beside(Path(path)) as (fd, tmp):
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())


def atomic_save(path: str | Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(handle)`` inside :func:`atomic_open`: a one-liner for ``np.save`` and friends."""
    with atomic_open(path) as handle:
        write(handle)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
