"""Datasets for polarnet's studies."""

from .xor import xor_pool

__all__ = ["xor_pool"]
