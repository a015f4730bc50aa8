"""Drawing `count` rows of a large source builds `count` rows as Python objects, never the whole set (issue 23,
item 6). Measured with tracemalloc on 200k-row sources (a `save_to_disk` folder and a JSONL file): the Python
memory the draw allocates stays within 3x the drawn rows' own size plus the JSONL line index (8 bytes a line),
where materialising the source (what podium did before) allocates about 100x more. Time and process RSS on a
2M-row set are benchmarks/large_source_draw.py.
"""

from __future__ import annotations

import random
import sys
import tracemalloc

import pytest

from podium.data.mixture import build_mixture

ROWS, DRAWN = 200_000, 2_000


def deep_size(value) -> int:
    """Bytes of a record as Python objects (dicts, lists, strings), the way the bound counts them."""
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(deep_size(k) + deep_size(v) for k, v in value.items())
    if isinstance(value, list):
        return sys.getsizeof(value) + sum(deep_size(v) for v in value)
    return sys.getsizeof(value)


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    import datasets

    folder = tmp_path_factory.mktemp("large")
    questions = [f"question {i}: " + "why " * 40 for i in range(ROWS)]
    answers = [f"answer {i}: " + "because " * 20 for i in range(ROWS)]
    datasets.Dataset.from_dict({"prompt": questions, "completion": answers}).save_to_disk(str(folder / "saved"))
    (folder / "rows.jsonl").write_text("".join(f'{{"prompt": "{q}", "completion": "{a}"}}\n'
                                               for q, a in zip(questions, answers)))
    return folder


def traced_peak(fn):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("source", ["saved", "rows.jsonl"])
def test_drawing_a_few_rows_of_a_large_source_allocates_only_those(large, source):
    path = str(large / source)
    build_mixture([{"path": path, "count": 10}], use="sft")  # imports and first-use caches outside the measurement
    (rows, counts), peak = traced_peak(lambda: build_mixture([{"path": path, "count": DRAWN}], seed=1, use="sft"))
    assert counts == {path: DRAWN}
    drawn = sum(deep_size(r) for r in rows)
    # The JSONL line index: offsets and line numbers, 8 bytes each (x 1.25 while its arrays grow).
    index = 20 * ROWS if source.endswith(".jsonl") else 0
    assert peak < 3 * drawn + index + 1_000_000, (peak, drawn)
    whole = ROWS * deep_size(rows[0])  # every row as Python objects: what the draw used to build first
    assert peak < whole / 20, (peak, whole)


def test_the_drawn_rows_are_the_rows_at_the_drawn_indices(large):
    """The batch-wise Arrow read and the JSONL offsets return the rows at the drawn indices, in the drawn order."""
    for source in ("saved", "rows.jsonl"):
        path = str(large / source)
        rows, _ = build_mixture([{"path": path, "count": 50}], seed=3, use="sft", shuffle=False)
        drawn = random.Random(f"3:0:{path}").sample(range(ROWS), 50)
        assert [r["prompt"].split(":")[0] for r in rows] == [f"question {i}" for i in drawn]
