"""The small Gaussian diffusion used by the per-token MAR heads (video tokens and ``mar`` action heads)."""

from hma_zoo.diffusion.gaussian import GaussianDiffusion
from hma_zoo.diffusion.mlp import DiffusionMLP

__all__ = ["GaussianDiffusion", "DiffusionMLP"]
