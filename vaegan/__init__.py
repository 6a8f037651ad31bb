"""VAE-GAN: encoder, class-conditional decoder, projection discriminator (Larsen et al. 2016).

Public API: `VAEGAN` (model), `save_vaegan` / `load_vaegan` / `checkpoint_fingerprint`
(sampling checkpoint), `to_model_range` / `to_uint8` (pixel conventions), `train_vaegan`.
"""

from faces.io import checkpoint_fingerprint

from .checkpoint import CheckpointError, load_vaegan, save_vaegan
from .images import to_model_range, to_uint8
from .model import LATENT_DIMS, RESOLUTIONS, VAEGAN

__all__ = [
    "LATENT_DIMS",
    "RESOLUTIONS",
    "VAEGAN",
    "CheckpointError",
    "checkpoint_fingerprint",
    "load_vaegan",
    "save_vaegan",
    "to_model_range",
    "to_uint8",
]
