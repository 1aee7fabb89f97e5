"""Freed memory kept for the next step, instead of handed back to the kernel and faulted in again.

A training step allocates and frees the same few hundred arrays every step (activations,
gradients, a GEMM's output). glibc's malloc serves blocks above its mmap threshold (128 KB
at first, raised as large blocks are freed) with a fresh ``mmap`` and unmaps them on
``free``, and it trims the top of the heap once more than twice that threshold lies free
there. Between the forward pass (memory grows) and the end of the step (it all goes) both
happen, so every step the kernel hands the same pages back zeroed, and each first touch of
a page is a minor page fault and system time. ``python -m benchmarks.profile_step
--backend=c --malloc=default`` counts the faults and the step time each way (its numbers
are in benchmarks/RESULTS.md).

Two ``mallopt`` settings make the heap behave like a caching allocator: blocks up to
``MMAP_THRESHOLD`` come from the heap, and up to ``TRIM_THRESHOLD`` of free memory at its
top is kept. Applied once when minillm is imported, for every backend; the resident size
then stays at the step's peak instead of breathing with it. Linux with glibc only (other C
libraries have their own policies); ``MINILLM_MALLOC=default`` leaves malloc alone.
"""
import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
MMAP_THRESHOLD = 32 * 2 ** 20   # glibc's largest allowed value on 64-bit (4 MiB · sizeof(long))
TRIM_THRESHOLD = 256 * 2 ** 20

state = "not applied"


def keep_freed_memory():
    """Apply the two settings (once); returns a line that says what was done."""
    global state
    if state != "not applied":
        return state
    if os.environ.get("MINILLM_MALLOC", "keep") == "default":
        state = "left to the C library (MINILLM_MALLOC=default)"
    elif platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        state = f"left to the C library ({platform.system()} {platform.libc_ver()[0] or 'unknown libc'}: not glibc)"
    else:
        mallopt = ctypes.CDLL(None).mallopt
        if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD):
            state = (f"glibc malloc keeps freed memory: heap up to {MMAP_THRESHOLD >> 20} MiB blocks, "
                     f"{TRIM_THRESHOLD >> 20} MiB kept free")
        else:
            state = "glibc refused mallopt; malloc left as it was"
    return state
