"""Ballast: continuous fine-tuning of YOLO detectors that never forgets its anchor data."""

__version__ = "0.1.0"
