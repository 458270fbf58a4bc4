"""Where datasets and decode caches live, and the small file helpers every loader shares.

Writes are atomic (a temp file in the same folder, fsync, ``os.replace``) so an interrupted run or
two ranks writing at once never leave a half-written file under the final name.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_CHUNK = 1 << 20
# A line of `sha256sum` output: 64 hex digits, two spaces (or space + '*' in binary mode), a name.
_SUMS_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


def _user_cache_home() -> Path:
    """``$XDG_CACHE_HOME`` if set, else ``~/.cache`` (the XDG base-directory default)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg).expanduser() if xdg else Path.home() / ".cache"


def data_root(data_dir: str | None) -> Path:
    """The folder holding one sub-folder per named dataset (``mnist/``, ``fashion-mnist/``).

    ``data_dir`` if given, else ``$VAELAB_DATA``, else the per-user cache
    (``$XDG_CACHE_HOME/vaelab/data`` or ``~/.cache/vaelab/data``), so CI and shared machines can
    point every run at one read-only copy while a laptop just downloads into the user's cache.
    """
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get("VAELAB_DATA")
    if env:
        return Path(env).expanduser()
    return _user_cache_home() / "vaelab" / "data"


def cache_dir() -> Path:
    """The folder for decoded-dataset caches: ``$VAELAB_CACHE``, else ``<user cache>/vaelab/cache``.

    Kept apart from :func:`data_root` because the data folder may be read-only and shared, while the
    decode cache is always per user and safe to delete.
    """
    env = os.environ.get("VAELAB_CACHE")
    if env:
        return Path(env).expanduser()
    return _user_cache_home() / "vaelab" / "cache"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks so large files never sit in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_sha256sums(folder: Path) -> dict[str, str]:
    """File name -> sha256 from a ``SHA256SUMS`` file in ``folder`` (``sha256sum`` format).

    A local mirror uses it to declare its own checksum for a file that differs from the official
    one. No file means no entries; lines that are not ``<64 hex>  <name>`` are ignored.
    """
    sums_path = folder / "SHA256SUMS"
    try:
        text = sums_path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    sums: dict[str, str] = {}
    for line in text.splitlines():
        match = _SUMS_LINE.match(line.strip())
        if match:
            sums[Path(match.group(2).strip()).name] = match.group(1).lower()
    return sums
