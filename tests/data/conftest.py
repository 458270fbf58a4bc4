"""Data-test fixtures: no test may reach the network."""

from __future__ import annotations

from urllib.error import URLError

import pytest

import vaelab.data.download


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every download attempt fail as it would offline; tests that serve bytes patch again."""

    def offline(url: str, timeout: float | None = None) -> None:
        raise URLError("network disabled in tests")

    monkeypatch.setattr(vaelab.data.download, "urlopen", offline)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh decode cache per test (the repo-wide conftest may do the same; this keeps tests/data
    self-contained)."""
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path_factory.mktemp("vaelab-cache")))
