"""Avow: AI upscaling that says so.

The public API is small and lives where its weight does: ``avow.engine.upscale_file`` (torch),
``avow_c2pa.verify.verify_file`` (no torch). This module imports neither, so ``avow verify``
and ``avow --version`` start fast.
"""

import os

# numpy's products here are small and come between torch's (which has its own thread pool): with
# OpenBLAS's default pool its idle threads spin after each one, which cost the mark 3x its CPU time
# on a 2-core machine. Read when numpy loads, so it holds wherever avow is imported first (the CLI,
# the worker); an environment that sets it keeps its own.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from avow_c2pa import __version__

# Tile size in input pixels when none is asked for: the CLI's, the worker's and the engine's default;
# the editor hooks read it from the worker's `describe` (tests/test_constants.py checks their fallbacks).
DEFAULT_TILE = 256

# The worker protocol's version (avow/worker.py); `avow install` records it beside each hook, whose client
# refuses a worker that speaks another.
PROTOCOL = 2  # 2: upscale takes integer/half .npy pixels and answers in the type asked for (dtype)

__all__ = ["DEFAULT_TILE", "PROTOCOL", "__version__"]
