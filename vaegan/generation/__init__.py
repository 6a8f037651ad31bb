"""Latent-perturbation augmentation: fill the long tail with VAE-GAN samples (scripts/augment.py)."""
