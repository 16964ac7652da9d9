"""faceforge: train, evaluate and deploy face recognition models."""

__version__ = "0.3.0"
