"""Numbers that compare VAEs: ELBO and its terms (more under the evaluation issue)."""

from vaelab.evaluation.elbo import evaluate_elbo

__all__ = ["evaluate_elbo"]
