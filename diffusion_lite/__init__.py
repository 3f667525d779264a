"""diffusion_lite: text-to-image diffusion from scratch, small enough for a laptop CPU."""

__version__ = "0.1.0"

