"""Generation: sampling from the prior and reconstruction."""

from vaelab.generation.sampling import reconstruct, sample, save_samples_npz

__all__ = ["reconstruct", "sample", "save_samples_npz"]
