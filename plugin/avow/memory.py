"""Freed band-sized buffers go back to the system, so the peak is what the engine holds.

glibc's malloc raises its mmap threshold to the largest block freed (up to 32 MiB). After the
first band is freed, the arrays of strips and tiles come from the heap, which fragments and keeps
what was freed: a 16 MP upscale peaked 40-100 MiB above what its arrays need. ``release_freed``
(``malloc_trim``) after each band hands the heap's free pages back. A fixed, lower mmap threshold
did as well for memory but cost 30 % more CPU (each tile's activations page-faulted afresh).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018  # glibc only
    except (OSError, AttributeError):  # not glibc: its allocator has its own policy
        return None
    return libc


def release_freed() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
