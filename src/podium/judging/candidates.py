"""Judge candidate sets from a JSONL file, as llm-blender's `rank` does for PairRM users, with any judge kind.

Each input row is `{"prompt": text or messages, "responses": [K strings]}` (plus `answer` and `task` for the
verifier); each output row is the input row with
- `scores` [K]: the judge's own per-response scores: PairRM's aggregated scores s_i = mean_j (C_ij - C_ji)
  (`Blender.rank(..., return_scores=True)`), a reward model's rewards r_i, a GPM's s_hat_i = mean_j L_ij (the
  GPO target, the GPM code's aggregate), the verifier's correctness 0/1;
- `probabilities` [K, K]: the matrix P the self-play loop uses (P_ij = P(response i beats j), P_ii = 1/2).
A row the judge cannot score (an empty response) gets `scores: null`, `probabilities: null` and `invalid`:
{"reason", "responses": [indices]}, as the self-play loop drops such a prompt.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from podium.data.chat import check_messages, json_type
from podium.errors import DataError, PodiumError
from podium.files import read_jsonl, write_jsonl
from podium.judging.base import win_probabilities
from podium.judging.build import JudgeSpec, build_judge
from podium.tasks import get_task

CHUNK = 256  # rows per judge call: PairRM batches the pairs of this many prompts together


def check_row(row: dict, kind: str) -> None:
    """A DataError naming file, line and field for a row that is not a candidate set."""
    where = row.get("_source", "?")
    for field in ("prompt", "responses"):
        if field not in row:
            raise DataError(f"{where}: missing field {field!r}")
    if not isinstance(row["prompt"], str):
        check_messages(row["prompt"], where, "prompt")
    responses = row["responses"]
    if not isinstance(responses, list) or not responses:
        raise DataError(f"{where}: field 'responses' must be a non-empty list of strings (got {json_type(responses)})")
    for i, r in enumerate(responses):
        if not isinstance(r, str):
            raise DataError(f"{where}: responses[{i}] must be a string (got {json_type(r)})")
    if kind == "verifier":
        for field in ("answer", "task"):
            if not isinstance(row.get(field), str):
                raise DataError(f"{where}: field {field!r} must be a string: the verifier checks each response against "
                                "the row's gold answer with its task's checker")
        try:
            get_task(row["task"])
        except PodiumError as e:
            raise DataError(f"{where}: field 'task': {e}") from None


def judged_row(row: dict, judgement) -> dict:
    out = {k: v for k, v in row.items() if k not in ("scores", "probabilities", "invalid")}
    if not judgement.valid:
        return {**out, "scores": None, "probabilities": None,
                "invalid": {"reason": judgement.reason, "responses": list(judgement.invalid)}}
    scores = judgement.response_scores if judgement.response_scores is not None else win_probabilities(judgement.matrix)
    return {**out, "scores": [float(x) for x in scores], "probabilities": judgement.matrix.double().tolist()}


def judge_file(spec: JudgeSpec, data: str | os.PathLike, output: str | os.PathLike, *, progress: bool = True) -> dict:
    """Judge every candidate set of `data` into `output` (written at once, by a rename); returns a summary."""
    data, output = Path(data), Path(output)
    if output.exists() and output.resolve() == data.resolve():
        raise PodiumError(f"--output {output} is the input file; write the judged rows elsewhere")
    if output.is_dir():
        raise PodiumError(f"--output {output} is a folder; give a file name")
    rows = read_jsonl(data)
    if not rows:
        raise DataError(f"{data}: no rows")
    for row in rows:
        check_row(row, spec.kind)
    judge = build_judge(spec, progress=progress)
    start = time.perf_counter()
    judged = []
    for s in range(0, len(rows), CHUNK):
        chunk = rows[s : s + CHUNK]
        items = [(r["prompt"], r["responses"], r.get("answer"), r.get("task")) for r in chunk]
        judged.extend(judged_row(r, j) for r, j in zip(chunk, judge.judge_many(items)))
    seconds = time.perf_counter() - start
    write_jsonl(output, judged)
    invalid = sum(r["scores"] is None for r in judged)
    k = [len(r["responses"]) for r in rows]
    return {"rows": len(rows), "invalid": invalid, "responses": sum(k), "seconds": round(seconds, 3),
            "judge": spec.kind, "output": str(output)}
