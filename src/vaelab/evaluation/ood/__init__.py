"""Out-of-distribution detection with a VAE's likelihood: scores, the background model of the
likelihood ratio, the separation metrics and the calibrated threshold (docs/ood.md)."""
