"""Avow's provenance layer: EXIF/XMP disclosure, C2PA signing and verification.

It never imports torch: verifying a file must start fast and install light.
"""

__version__ = "0.1.0"
