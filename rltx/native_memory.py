"""Let the C library keep the buffers a training step frees, for the next step to reuse.

TensorFlow 2.21 calls mallopt(M_MMAP_THRESHOLD, 128 KiB) once per process, the first time it builds a
GeneratorDataset kernel (tensorflow::data::ApplyPython311MemoryPatch, for Python generators fed to tf.data).
tf.distribute builds one for every distributed dataset, so every rltx training run triggers it. A fixed
threshold also switches off glibc's own dynamic one, so from then on every allocation above 128 KiB is a
fresh mmap, unmapped again on free: each step's oneDNN weight reorders (9 MiB for a 3x3x512x512 kernel) and
activations fault their pages in anew. In a short ResNet18 run that was 3.1 M minor page faults and 30 % of the
cpu time in the kernel (docs/calibration.md, "The allocator: TensorFlow's 128 KiB mmap threshold").

rltx feeds tf.data no Python generators, so after building an input iterator it sets the thresholds back to
the ceiling glibc's dynamic rule would reach. The C library's state is the process's, not rltx's: nothing
here runs at import time.
"""
from __future__ import annotations

import ctypes
import functools
import sys

# glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

# glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit platforms: the highest value its dynamic threshold reaches by
# itself; larger blocks are still mapped and returned one by one.
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
# Twice the mmap threshold, as glibc's dynamic rule keeps it: free memory at the top of the heap beyond this
# goes back to the kernel.
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES


@functools.cache
def _mallopt():
    """The C library's mallopt, or None where there is none (not Linux, or a C library without it)."""
    if not sys.platform.startswith("linux"):
        return None
    function = getattr(ctypes.CDLL(None), "mallopt", None)
    if function is not None:
        function.argtypes, function.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return function


def reuse_freed_buffers() -> bool:
    """Set the mmap and trim thresholds to glibc's dynamic ceiling; True when the C library accepted both
    (glibc returns 1 on success; a C library that ignores mallopt, or none, gives False and changes nothing).
    Call it after TensorFlow has built an input iterator, which is when TensorFlow sets its own threshold."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
            and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
