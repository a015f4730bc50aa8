"""HeapTrimmer: trims only before a step larger than every earlier one, on CPU, where glibc has malloc_trim."""

import torch

from podium.training.host_heap import HeapTrimmer, batch_elements


def counting(trimmer: HeapTrimmer) -> list[int]:
    calls = []
    trimmer.trim = lambda pad: calls.append(pad) or 1
    return calls


def batch(rows: int, cols: int) -> dict:
    return {"input_ids": torch.zeros(rows, cols, dtype=torch.long), "count": 3, "attention_mask": None}


def test_batch_elements_counts_tensor_elements_only():
    assert batch_elements({**batch(2, 5), "labels": torch.zeros(2, 5)}) == 20


def test_trims_before_a_step_larger_than_every_earlier_step():
    heap = HeapTrimmer("cpu")
    calls = counting(heap)
    sizes = [(8, 331), (8, 324), (8, 401), (8, 380), (8, 477), (8, 434)]
    trimmed = []
    for rows, cols in sizes:
        before = len(calls)
        heap.before_step([batch(rows, cols)])
        trimmed.append(len(calls) > before)
    # The first step has no earlier holes; 401 and 477 are new maxima; the others fit in what is kept.
    assert trimmed == [False, False, True, False, True, False]
    assert calls == [0, 0] and heap.trims == 2


def test_the_largest_micro_batch_of_a_step_counts():
    heap = HeapTrimmer("cpu")
    calls = counting(heap)
    heap.before_step([batch(8, 100)])
    heap.before_step([batch(8, 50), batch(8, 120)])
    assert len(calls) == 1


def test_off_on_a_gpu_device():
    assert HeapTrimmer("cuda").trim is None
    HeapTrimmer("cuda").before_step([batch(8, 100)])  # nothing to do, no error
