"""Download one file from a list of mirrors, verified against its official sha256.

The bytes stream into a temp file beside the destination while being hashed; only a file whose
sha256 equals the official one is renamed onto the final name, so a failed, interrupted or tampered
download never leaves a file a later run could half-read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.request import urlopen

from tqdm import tqdm

from vaelab.data.errors import DataError
from vaelab.io.atomic import atomic_open

_CHUNK = 1 << 20
_TIMEOUT_S = 60


class DownloadFailed(Exception):
    """Every mirror failed for one file; ``reasons`` says how each one did."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


class _ChecksumMismatch(Exception):
    pass


def _fetch(url: str, dest: Path, sha256: str, progress: bool) -> None:
    """Stream ``url`` to ``dest`` through an atomic temp file, raising before the rename on a bad hash."""
    with urlopen(url, timeout=_TIMEOUT_S) as response, atomic_open(dest) as handle:
        headers = getattr(response, "headers", None)
        length = headers.get("Content-Length") if headers is not None else None
        digest = hashlib.sha256()
        with tqdm(
            total=int(length) if length else None,
            unit="B",
            unit_scale=True,
            desc=dest.name,
            disable=not progress,
            leave=False,
        ) as bar:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                handle.write(chunk)
                bar.update(len(chunk))
        if digest.hexdigest() != sha256:
            raise _ChecksumMismatch(f"{url} served a file with sha256 {digest.hexdigest()}, not {sha256}")


def download(file_name: str, mirrors: tuple[str, ...], dest: Path, sha256: str, progress: bool) -> None:
    """Fetch ``file_name`` from the first mirror that serves it with the official ``sha256``.

    Raises :class:`DownloadFailed` (network errors, bad checksums: one reason per mirror) when no
    mirror works, and :class:`DataError` when the destination folder cannot be written.
    """
    reasons = []
    for mirror in mirrors:
        url = mirror + file_name
        try:
            _fetch(url, dest, sha256, progress)
            return
        except _ChecksumMismatch as error:
            reasons.append(str(error))
        except PermissionError as error:
            raise DataError(
                f"Cannot write {dest} ({error}). Point data_dir or $VAELAB_DATA at a writable folder, "
                f"or put the file there yourself."
            ) from error
        except OSError as error:  # URLError, HTTPError, timeouts and connection resets are all OSError
            reasons.append(f"{url}: {error}")
    raise DownloadFailed(reasons)
