"""Generation: sampling from the prior, reconstruction, and walks through the latent space."""

from vaelab.generation.latent import (
    PCAProjection,
    attribute_vector,
    dims_by_kl,
    encode_mean,
    interpolate,
    interpolate_latents,
    kl_per_dim,
    latent_arithmetic,
    project_pca,
    traverse,
    traverse_latents,
)
from vaelab.generation.sampling import reconstruct, sample, save_samples_npz

__all__ = [
    "PCAProjection",
    "attribute_vector",
    "dims_by_kl",
    "encode_mean",
    "interpolate",
    "interpolate_latents",
    "kl_per_dim",
    "latent_arithmetic",
    "project_pca",
    "reconstruct",
    "sample",
    "save_samples_npz",
    "traverse",
    "traverse_latents",
]
