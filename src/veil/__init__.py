"""Veil: take a plain Python program to a confidential, attested service."""

__all__ = ["__version__"]

__version__ = "0.1.0"
