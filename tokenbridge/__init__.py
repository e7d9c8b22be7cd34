"""TokenBridge Lab: post-training dimension-wise quantization of VAE latents and a
channel-wise autoregressive generator (arXiv 2503.16430), small enough to run on a laptop."""

__version__ = "0.1.0"
