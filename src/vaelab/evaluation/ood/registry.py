"""The OOD scores by name, with what each costs (``SCORES``), and the defaults of ``vaelab score``;
``scores.py`` computes them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vaelab.errors import UsageError

DEFAULT_SCORE = "density_of_states"
DEFAULT_K = 1


@dataclass(frozen=True)
class ScoreInfo:
    name: str
    title: str
    cost: str
    needs_background: bool = False


SCORES: dict[str, ScoreInfo] = {
    s.name: s
    for s in (
        ScoreInfo("nll", "-log p(x), nats (IW, K samples)", "1 encoder + K decoder passes per image"),
        ScoreInfo("bits_per_dim", "-log p(x) in bits per dimension", "as nll"),
        ScoreInfo(
            "complexity",
            "bits/dim - lossless codec bits/dim (Serra et al. 2020)",
            "as nll + one lossless encode (Pillow) per image",
        ),
        ScoreInfo(
            "likelihood_ratio",
            "-(log p_model - log p_background) (Ren et al. 2019)",
            "as nll + one pass of the background model (+ one lossless encode over 8-bit levels); "
            "its fit is one-off",
            needs_background=True,
        ),
        ScoreInfo(
            "density_of_states",
            "-log density of (log p_model, log p_background, log p_codec) (Morningstar et al. 2021)",
            "as likelihood_ratio + one lossless encode per image (+ a 3-d Gaussian mixture's density); "
            "its fit, with the background's, is one-off",
            needs_background=True,
        ),
        ScoreInfo(
            "likelihood_regret",
            "ELBO gain of a per-image optimised posterior (Xiao et al. 2020)",
            "as nll + steps x (decoder forward and backward) per image: tens of times nll",
        ),
    )
}


def check_scores(names: Iterable[str]) -> list[str]:
    """The names, each checked to be a registered score (a UsageError names the known ones)."""
    names = list(names)
    unknown = [n for n in names if n not in SCORES]
    if unknown:
        raise UsageError(f"unknown score {unknown[0]!r}; known: {', '.join(SCORES)}")
    return names
