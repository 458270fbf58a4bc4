"""The benchmarks' smallest settings share one cache: the feature nets of sample-quality figures are
keyed by a fingerprint of their training images, so a net trained for one benchmark serves the next
instead of being trained again (the suite's time), and no result depends on the order."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def _benchmark_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("benchmark-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(_benchmark_cache, monkeypatch):
    """Overrides the suite's per-test cache for the benchmarks: one cache for all of them."""
    monkeypatch.setenv("VAELAB_CACHE", str(_benchmark_cache))
