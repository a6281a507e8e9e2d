"""Avow: AI upscaling that says so.

The public API is small and lives where its weight does: ``avow.engine.upscale_file`` (torch),
``avow_c2pa.verify.verify_file`` (no torch). This module imports neither, so ``avow verify``
and ``avow --version`` start fast.
"""

from avow_c2pa import __version__

__all__ = ["__version__"]
