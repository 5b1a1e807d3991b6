"""genlab: a config-driven PyTorch lab for image generative models."""

__version__ = "0.1.0"
