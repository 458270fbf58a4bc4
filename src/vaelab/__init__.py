"""vaelab: train, evaluate and use variational autoencoders for images."""

__version__ = "0.1.0"
