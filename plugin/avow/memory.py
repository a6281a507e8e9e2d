"""Freed band-sized buffers go back to the system, so the peak is what the engine holds.

glibc's malloc raises its mmap threshold to the largest block freed (up to 32 MiB). After the
first band is freed, every array of a strip or a tile comes from the heap, which fragments and is
not given back: a 16 MP upscale peaked 40-100 MiB above what its arrays need (1.4-1.8x the
working set). A fixed threshold of 4 MiB keeps bands, tiles and wide strips mapped on their own
(returned when freed) and small arrays on the heap, where they cost no page faults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_MMAP_THRESHOLD = -3  # mallopt's parameter (malloc.h)
_THRESHOLD = 4 << 20


@functools.cache
def return_large_buffers() -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)
    except (OSError, AttributeError):  # not glibc: its allocator has its own policy
        pass
