"""Let a worker reuse the memory it frees instead of handing it back to the OS at once.

Dask starts each worker process with MALLOC_TRIM_THRESHOLD_=65536 (its nanny's
pre-spawn environment, against freed memory that looks leaked). Setting that also
pins glibc's mmap threshold at 128 KiB, so every edge-sized tensor of a model's
batch (megabytes, several per convolution) becomes a fresh mmap whose pages fault
in on first touch, and those faults can cost more than the arithmetic
(docs/run_speed.md).

The tasks that allocate heavily call it first: inference, featurizing and the phase
diagrams of the hull stage (pymatgen's many small arrays).

With them, blocks up to MMAP_MB come from the heap and are reused; the heap
returns its free top to the OS once it exceeds TRIM_MB, so a worker keeps at
most that much memory it no longer uses.
"""
from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_MB, TRIM_MB = 32, 64

_done = False


def reuse_freed_memory() -> bool:
    """Set the thresholds once per process; False where the C library is not glibc."""
    global _done
    if not _done:
        try:
            mallopt = ctypes.CDLL("libc.so.6").mallopt
        except (OSError, AttributeError):  # macOS, musl: their allocators need nothing here
            return False
        _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_MB << 20)) & bool(mallopt(M_TRIM_THRESHOLD, TRIM_MB << 20))
    return _done


def active() -> bool:
    """Did this process set the thresholds?"""
    return _done
