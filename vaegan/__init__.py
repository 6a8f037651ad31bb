"""VAE-GAN: encoder, class-conditional decoder, projection discriminator, latent augmentation (issues 3-4)."""
