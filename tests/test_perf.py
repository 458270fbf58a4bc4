"""Flushing denormals: on every intra-op thread inside the block, the previous mode after it."""

import pytest
import torch

from vaelab.perf import denormals_flushed, flush_denormals

pytestmark = pytest.mark.skipif(not torch.set_flush_denormal(False), reason="no FTZ/DAZ on this CPU")


def _denormals_surviving() -> int:
    # Large enough that torch splits the multiply over its intra-op threads.
    x = torch.full((1 << 21,), 1e-39)
    return int((x * 1.0 != 0).sum())


def test_flush_reaches_every_thread_and_is_restored():
    assert not denormals_flushed() and _denormals_surviving() == 1 << 21
    with flush_denormals() as supported:
        assert supported and denormals_flushed()
        # torch.set_flush_denormal alone sets the calling thread only: with 2 threads, half survived.
        assert _denormals_surviving() == 0
        with flush_denormals(False):
            assert _denormals_surviving() == 1 << 21
        assert _denormals_surviving() == 0
    assert not denormals_flushed() and _denormals_surviving() == 1 << 21


def test_training_flushes_denormals_unless_switched_off(tiny_config, tmp_path):
    from vaelab.training import train

    seen = []
    hook = lambda row: seen.append(_denormals_surviving())  # noqa: E731
    train(tiny_config(1), tmp_path / "a", progress=False, log=False, on_epoch_end=hook)
    train(
        tiny_config(1, "train.flush_denormals=false"),
        tmp_path / "b",
        progress=False,
        log=False,
        on_epoch_end=hook,
    )
    assert seen == [0, 1 << 21]
    assert _denormals_surviving() == 1 << 21  # back to torch's default after the run
