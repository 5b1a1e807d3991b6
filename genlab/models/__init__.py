"""Networks by family: each family keeps its own architecture registry (GAN pairs in `gan.py`)."""

from __future__ import annotations

from genlab.models.base import DataShape
from genlab.models.dcgan import DCGANDiscriminator, DCGANGenerator
from genlab.models.diffusion import DIFFUSION_ARCHITECTURES, GaussianDiffusion
from genlab.models.gan import GAN_ARCHITECTURES, attention_sides, build_models, discriminator_norm
from genlab.models.patch import MultiScaleDiscriminator, PatchDiscriminator
from genlab.models.resnet import ResNetDiscriminator, ResNetGenerator
from genlab.models.vae import VAE, VAE_ARCHITECTURES

__all__ = ["DIFFUSION_ARCHITECTURES", "GAN_ARCHITECTURES", "GaussianDiffusion", "DCGANDiscriminator", "DCGANGenerator", "DataShape", "MultiScaleDiscriminator", "PatchDiscriminator",
           "ResNetDiscriminator",
           "ResNetGenerator", "VAE", "VAE_ARCHITECTURES", "attention_sides", "build_models", "discriminator_norm"]
