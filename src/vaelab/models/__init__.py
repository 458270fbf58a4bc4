"""The VAE and its parts."""

from vaelab.models.config import ModelConfig
from vaelab.models.vae import VAE, ModelLoadError, VAEOutput, resolve_model_dir

__all__ = ["VAE", "ModelConfig", "ModelLoadError", "VAEOutput", "resolve_model_dir"]
