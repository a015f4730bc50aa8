"""Keeping a CPU training run's resident memory near its live tensors: trim the C heap before a bigger step.

On CPU, torch takes tensor memory from the C allocator (glibc `malloc`). Once a large block has been
freed, glibc raises its mmap threshold to that block's size (the dynamic threshold, up to 32 MiB), so
every later activation of a step comes from the heap, and freed heap memory stays resident: it is only
handed back from the heap's top. A step whose batch is longer than every step before needs larger
blocks than the holes the earlier steps left, so the heap grows past those holes, and the resident
size (what `ru_maxrss` and the OS count) climbs above what the step's tensors need.

Measured on benchmarks/sft_vs_trl.py (3.5M-parameter Llama, 8 steps of 8 examples, fp32, one thread,
padded layout; glibc 2.36): at the peak step the live tensors were about 400 MB above the start in
podium's run and about 404 MB in TRL's, but glibc held another 238 MB of free heap pages in podium's run
and 155 MB in TRL's, so podium's peak RSS was about 5% above TRL's. With the mmap threshold fixed low
(`MALLOC_MMAP_THRESHOLD_=65536`, nothing kept) the peaks were podium +451 MB and TRL +477 MB (packed:
+387 and +407), but every activation then costs fresh page faults: CPU time 13.2-17.1 s against 10.3 s.
Trimming after every step brought the peak to +579-588 MB at about 15% more CPU time. Which holes stay
resident depends on the order of every allocation, so the same run varies by +-30 MB between processes.

So the loop trims only before a step that holds more batch elements than every step before it
(`HeapTrimmer.before_step`): the free pages the earlier steps left, which that step could mostly not
reuse, go back to the OS, and the step faults in what it needs. Steps that are not larger reuse the
kept holes at no cost, and the trims stop once the longest batch has been seen. This does not bound
what a long run's heap settles at after its last trim; it removes what the growth phase leaves behind.
What is computed does not change, only which freed host memory stays resident. Off on a GPU (the
activations live in torch's CUDA caching allocator) and where the C library has no `malloc_trim`.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable

import torch


def glibc_malloc_trim():
    """glibc's `malloc_trim(pad) -> int`, or None where the C library has none (musl, macOS, Windows)."""
    try:  # the symbols the interpreter is linked with: its C library's, without searching for a file
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def batch_elements(batch: dict) -> int:
    """Elements of the tensors of one micro-batch: a measure of how much activation memory it needs."""
    return sum(v.numel() for v in batch.values() if torch.is_tensor(v))


class HeapTrimmer:
    """Hands the C heap's free pages back to the OS before a step larger than every step before it."""

    def __init__(self, device: torch.device | str):
        self.trim = glibc_malloc_trim() if torch.device(device).type == "cpu" else None
        self.largest = 0
        self.trims = 0

    def before_step(self, batches: Iterable[dict]) -> None:
        """Call with the step's micro-batches before its first forward."""
        if self.trim is None:
            return
        size = max((batch_elements(b) for b in batches), default=0)
        if size > self.largest:
            if self.largest:  # the first step has no earlier holes to give back
                self.trim(0)
                self.trims += 1
            self.largest = size
