"""Numbers that compare VAEs: ELBO, importance-weighted log-likelihood and bits/dim, posterior health,
reconstruction quality, sample quality in a learned feature space, and sharpness (fine detail kept).

``eval_set.py`` picks the images, ``measure.py`` makes each section of a report, ``report.py`` assembles,
writes and reads the report, ``tables.py`` renders it as Markdown.
"""

from vaelab.evaluation.dataset_elbo import elbo_per_image, evaluate_elbo
from vaelab.evaluation.dataset_likelihood import evaluate_log_likelihood
from vaelab.evaluation.eval_set import evaluation_inputs, fixed_inputs, in_memory, seeded_subset
from vaelab.evaluation.likelihood import LogLikelihood, iw_log_likelihood_batch, nats_to_bits_per_dim
from vaelab.evaluation.measure import EvaluationOptions, quick_evaluate
from vaelab.evaluation.posterior import PosteriorStats, posterior_statistics
from vaelab.evaluation.reconstruction import compare_reconstructions, psnr, reconstruction_metrics, ssim
from vaelab.evaluation.report import evaluate_model, load_report, write_report
from vaelab.evaluation.sample_quality import compare_features, frechet_distance, precision_recall
from vaelab.evaluation.sharpness import (
    high_frequency_power,
    laplacian_variance,
    near_binary_fraction,
    radial_power_spectrum,
    sharpness_ratios,
)

__all__ = [
    "EvaluationOptions",
    "LogLikelihood",
    "PosteriorStats",
    "compare_features",
    "compare_reconstructions",
    "elbo_per_image",
    "evaluate_elbo",
    "evaluate_log_likelihood",
    "evaluate_model",
    "evaluation_inputs",
    "fixed_inputs",
    "frechet_distance",
    "high_frequency_power",
    "in_memory",
    "iw_log_likelihood_batch",
    "laplacian_variance",
    "load_report",
    "nats_to_bits_per_dim",
    "near_binary_fraction",
    "posterior_statistics",
    "precision_recall",
    "psnr",
    "quick_evaluate",
    "radial_power_spectrum",
    "reconstruction_metrics",
    "seeded_subset",
    "sharpness_ratios",
    "ssim",
    "write_report",
]
