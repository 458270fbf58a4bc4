"""Numbers that compare VAEs: ELBO, importance-weighted log-likelihood and bits/dim, posterior health,
reconstruction quality, and sample quality in a learned feature space (see ``report.py``)."""

from vaelab.evaluation.elbo import elbo_per_image, evaluate_elbo
from vaelab.evaluation.likelihood import (
    LogLikelihood,
    evaluate_log_likelihood,
    iw_log_likelihood_batch,
    nats_to_bits_per_dim,
)
from vaelab.evaluation.posterior import PosteriorStats, posterior_statistics
from vaelab.evaluation.reconstruction import psnr, reconstruction_metrics, ssim
from vaelab.evaluation.report import (
    EvaluationOptions,
    evaluate_model,
    fixed_inputs,
    load_report,
    quick_evaluate,
    write_report,
)
from vaelab.evaluation.sample_quality import compare_features, frechet_distance, precision_recall

__all__ = [
    "EvaluationOptions",
    "LogLikelihood",
    "PosteriorStats",
    "compare_features",
    "elbo_per_image",
    "evaluate_elbo",
    "evaluate_log_likelihood",
    "evaluate_model",
    "fixed_inputs",
    "frechet_distance",
    "iw_log_likelihood_batch",
    "load_report",
    "nats_to_bits_per_dim",
    "posterior_statistics",
    "precision_recall",
    "psnr",
    "quick_evaluate",
    "reconstruction_metrics",
    "ssim",
    "write_report",
]
